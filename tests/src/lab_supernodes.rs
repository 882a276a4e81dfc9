//! Two supernodes on the NAT lab's internet (public hosts), the second joined to the
//! first: what a call between lab clients needs.

use crate::natlab::NatLab;
use crate::Proc;
use anyhow::Result;
use std::net::SocketAddr;
use std::time::Duration;

/// The running supernodes (killed on drop) and their QUIC addresses.
pub struct LabSupernodes {
    pub procs: Vec<Proc>,
    pub addrs: [SocketAddr; 2],
    _keys: tempfile::TempDir,
}

impl LabSupernodes {
    /// Starts `sn1` and `sn2` (joined to `sn1`) on port 4433 of fresh public hosts and
    /// returns once both are ready.
    pub fn start(lab: &mut NatLab) -> Result<LabSupernodes> {
        let keys = tempfile::tempdir()?;
        let (h1, h2) = (lab.server("sn1")?, lab.server("sn2")?);
        let addrs = [h1.addr(4433), h2.addr(4433)];
        let mut procs = Vec::new();
        for (host, addr, name, join) in [
            (&h1, addrs[0], "sn1", None),
            (&h2, addrs[1], "sn2", Some(addrs[0])),
        ] {
            let (listen, key) = (addr.to_string(), keys.path().join(name));
            let key = key.to_string_lossy().into_owned();
            let join = join.map(|j: SocketAddr| j.to_string());
            let mut args = vec!["--listen", listen.as_str(), "--key", key.as_str()];
            if let Some(j) = &join {
                args.extend(["--join", j.as_str()]);
            }
            let mut p = host.spawn_bin(name, "supernode", args)?;
            p.wait_for(Duration::from_secs(20), |l| {
                l.starts_with("supernode ready")
            })?;
            procs.push(p);
        }
        Ok(LabSupernodes {
            procs,
            addrs,
            _keys: keys,
        })
    }
}
