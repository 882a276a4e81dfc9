//! The NAT lab: a small internet of Linux network namespaces, built per test, with
//! clients behind nftables NAT routers of a chosen [`NatKind`]. Needs root, `ip`
//! (iproute2) and `nft` (nftables); without them [`NatLab::new`] returns an error that
//! says so, and a test using it fails (it never skips).
//!
//! ```text
//!         internet: namespace <prefix>-i, bridge br0, 198.51.100.0/24
//!  ───┬──────────────┬──────────────┬──────────────────┬──────────
//!     │              │              │                  │
//!  server .10     server .11     Public client .12   router: wan .13, nft NAT rules
//!                                                      lan 10.1.0.1
//!                                                      │
//!                                                    client 10.1.0.2 (default via .1)
//! ```
//!
//! Every host (server, public client, router, client) is its own namespace; servers,
//! public clients and routers sit on one bridge, each with its own address from
//! 198.51.100.10 up; client N behind a NAT lives on home LAN 10.N.0.0/24.
//! Namespace names are `pl<pid>n<lab>-<role><k>` (unique per process and lab, so labs
//! run in parallel threads and processes); dropping the [`NatLab`] kills what still
//! runs in them and deletes them all, also when the test panics. Namespaces left by a
//! killed test process are deleted by the next `NatLab::new`.
//!
//! ```no_run
//! use parley_e2e::natlab::{NatKind, NatLab};
//! # fn main() -> anyhow::Result<()> {
//! let mut lab = NatLab::new()?;
//! let server = lab.server("sn1")?; // a public address, e.g. 198.51.100.10
//! let alice = lab.client("alice", NatKind::PortRestricted, 0.0)?; // 10.1.0.2 behind a NAT
//! let listen = server.addr(4433).to_string();
//! let _sn = server.spawn_bin("sn1", "supernode", &["--listen", &listen])?;
//! let ping = alice.command("ping", ["-c1", &server.ip.to_string()]).status()?;
//! assert!(ping.success());
//! lab.set_loss(&alice, 5.0)?; // 5 % loss on alice's router from now on
//! # Ok(()) }
//! ```
//!
//! In short: [`NatLab::new`], then [`NatLab::server`] and [`NatLab::client`] hand out
//! [`Host`]s; [`Host::command`], [`Host::output`], [`Host::spawn`] and
//! [`Host::spawn_bin`] run programs inside one; [`NatLab::set_loss`] and
//! [`NatLab::add_public_ip`] change the network while it runs. `docs/nat-lab.md`
//! explains the nftables rules of each kind and why.

use crate::{bin, Proc};
use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// How a client reaches the internet segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// No NAT: the client has its own public address on the internet segment.
    Public,
    /// Endpoint-independent mapping and filtering: once the client has sent from a
    /// port, anyone may send to that port's mapping.
    FullCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering: only the
    /// exact address:port the client sent to may answer. The common home router.
    PortRestricted,
    /// Endpoint-dependent mapping (a new random external port per destination
    /// address:port) and address-and-port-dependent filtering.
    Symmetric,
    /// Port-restricted for TCP; every UDP packet is dropped, both ways.
    UdpBlocked,
}

impl NatKind {
    /// Every kind, for tests that loop over them.
    pub const ALL: [NatKind; 5] = [
        NatKind::Public,
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
        NatKind::UdpBlocked,
    ];
}

/// One machine in the lab: its own network namespace.
///
/// A `Host` is a plain description; the [`NatLab`] owns the namespace, so commands of
/// a host whose lab was dropped fail.
#[derive(Clone, Debug)]
pub struct Host {
    /// The name given to `server`/`client`, for logs.
    pub name: String,
    /// The network namespace the host's programs run in.
    pub ns: String,
    /// The host's own address: public for servers and `Public` clients, 10.N.0.2 on the
    /// home LAN behind a NAT.
    pub ip: Ipv4Addr,
    /// The NAT router's public (WAN) address, for clients behind a NAT.
    pub wan_ip: Option<Ipv4Addr>,
    /// The NAT router's namespace, for clients behind a NAT (`nft list ruleset` there).
    pub router_ns: Option<String>,
    /// What stands between the host and the internet segment (`Public` for servers).
    pub kind: NatKind,
}

impl Host {
    /// `ip netns exec <ns> program args...`, to be configured further and run.
    pub fn command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec"])
            .arg(&self.ns)
            .arg(program)
            .args(args);
        cmd
    }

    /// Runs `program args...` in the host to completion (stdin closed), whatever its
    /// exit status; fails only if it could not be started.
    pub fn output<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program, args);
        cmd.stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} in {}", describe(&cmd), self.name))
    }

    /// Starts `program args...` in the host as a [`Proc`] (stdout read line by line,
    /// killed on drop) labelled `name`.
    pub fn spawn<I, S>(&self, name: &str, program: impl AsRef<OsStr>, args: I) -> Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Proc::spawn_command(name, self.command(program, args))
    }

    /// Starts one of the workspace's binaries (`supernode`, `relay`, `parley`, found
    /// like [`crate::bin`]) in the host.
    pub fn spawn_bin<I, S>(&self, name: &str, bin_name: &str, args: I) -> Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn(name, bin(bin_name)?, args)
    }

    /// `ip:port` on the host's own address.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, port))
    }

    /// The address the internet sees the host's packets come from.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.wan_ip.unwrap_or(self.ip)
    }
}

/// Labs created by this process, for unique namespace names.
static LABS: AtomicU32 = AtomicU32::new(0);

/// The first public address handed out: 198.51.100.10.
const FIRST_PUBLIC: u8 = 10;

/// A lab topology; every namespace it made is deleted when it is dropped.
pub struct NatLab {
    prefix: String,
    internet: String,
    namespaces: Vec<String>,
    /// The last octet of the next free public address.
    next_public: u8,
    /// The `N` of the next home LAN 10.N.0.0/24.
    next_lan: u8,
    /// The bridge port (`h<k>` in the internet namespace) of every public host and router.
    ports: Vec<BridgePort>,
}

/// One namespace's link to the bridge.
struct BridgePort {
    ns: String,
    name: String,
    /// Whether the bridge's forward chain already jumps to this port's loss chain.
    lossy: bool,
}

impl NatLab {
    /// Builds the internet segment: a namespace with a bridge and nothing on it yet.
    pub fn new() -> Result<NatLab> {
        for (tool, arg, package) in [("ip", "-V", "iproute2"), ("nft", "-v", "nftables")] {
            let ok = Command::new(tool)
                .arg(arg)
                .output()
                .map(|o| o.status.success());
            if !matches!(ok, Ok(true)) {
                bail!("the NAT lab needs `{tool}` ({package}), which is not runnable here: install {package} (scripts/install-deps.sh)");
            }
        }
        sweep_stale_namespaces();
        let prefix = format!(
            "pl{}n{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = NatLab {
            internet: format!("{prefix}-i"),
            prefix,
            namespaces: Vec::new(),
            next_public: FIRST_PUBLIC,
            next_lan: 1,
            ports: Vec::new(),
        };
        let internet = lab.internet.clone();
        lab.add_namespace(&internet).context(
            "the NAT lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network namespaces",
        )?;
        ip(&format!("-n {internet} link add br0 type bridge"))?;
        ip(&format!("-n {internet} link set br0 up"))?;
        Ok(lab)
    }

    /// A server: its own namespace on the internet segment with a fresh public address.
    pub fn server(&mut self, name: &str) -> Result<Host> {
        let ns = format!("{}-s{}", self.prefix, self.namespaces.len());
        self.public_host(name, ns)
    }

    /// A client of the given kind: for `Public` a host like a server; otherwise a
    /// namespace with address 10.N.0.2 whose default route is a NAT router (10.N.0.1 on
    /// the LAN, a fresh public address on the WAN). `loss_percent` (0 to 100) of the
    /// packets between the client and the internet are dropped, each way.
    pub fn client(&mut self, name: &str, kind: NatKind, loss_percent: f64) -> Result<Host> {
        per_10k(loss_percent)?;
        if kind == NatKind::Public {
            let ns = format!("{}-p{}", self.prefix, self.namespaces.len());
            let host = self.public_host(name, ns)?;
            self.set_loss(&host, loss_percent)?;
            return Ok(host);
        }
        let n = self.next_lan;
        if n == 255 {
            bail!("the NAT lab ran out of home LANs (254)");
        }
        self.next_lan += 1;
        let router = format!("{}-r{n}", self.prefix);
        let client = format!("{}-c{n}", self.prefix);
        let wan_ip = self.attach_public(&router, "wan")?;
        self.add_namespace(&client)?;
        let (lan_gw, lan_ip) = (Ipv4Addr::new(10, n, 0, 1), Ipv4Addr::new(10, n, 0, 2));
        ip(&format!(
            "-n {client} link add eth0 type veth peer name lan netns {router}"
        ))?;
        ip(&format!("-n {client} addr add {lan_ip}/24 dev eth0"))?;
        ip(&format!("-n {client} link set eth0 up"))?;
        ip(&format!("-n {client} route add default via {lan_gw}"))?;
        ip(&format!("-n {router} addr add {lan_gw}/24 dev lan"))?;
        ip(&format!("-n {router} link set lan up"))?;
        run(Command::new("ip")
            .args(["netns", "exec", &router, "sh", "-c"])
            .arg("echo 1 > /proc/sys/net/ipv4/ip_forward"))?;
        nft(&router, &router_ruleset(kind, wan_ip, lan_ip))?;
        let host = Host {
            name: name.to_string(),
            ns: client,
            ip: lan_ip,
            wan_ip: Some(wan_ip),
            router_ns: Some(router),
            kind,
        };
        if loss_percent > 0.0 {
            self.set_loss(&host, loss_percent)?;
        }
        Ok(host)
    }

    /// Adds another public address to a server or `Public` client (RFC 5780's
    /// alternate address), returning it.
    pub fn add_public_ip(&mut self, host: &Host) -> Result<Ipv4Addr> {
        if host.router_ns.is_some() {
            bail!(
                "{} is behind a NAT: only public hosts get more public addresses",
                host.name
            );
        }
        let addr = self.take_public_ip()?;
        ip(&format!("-n {} addr add {addr}/24 dev eth0", host.ns))?;
        Ok(addr)
    }

    /// Sets the random loss between `host` and the internet, each way, from now on:
    /// in the forward chain of its NAT router, or on its bridge port for public hosts.
    pub fn set_loss(&mut self, host: &Host, loss_percent: f64) -> Result<()> {
        if let Some(router) = &host.router_ns {
            return nft(router, &loss_script("ip natlab loss", loss_percent)?);
        }
        let Some(port) = self.ports.iter_mut().find(|p| p.ns == host.ns) else {
            bail!("{} ({}) is not a host of this lab", host.name, host.ns);
        };
        if per_10k(loss_percent)? == 0 && !port.lossy {
            return Ok(());
        }
        let chain = format!("loss_{}", port.name);
        let mut script = format!(
            "table bridge natlab {{\n  chain {chain} {{\n  }}\n  chain forward {{\n    \
             type filter hook forward priority filter; policy accept;\n  }}\n}}\n"
        );
        if !port.lossy {
            for dir in ["iifname", "oifname"] {
                let _ = writeln!(
                    script,
                    "add rule bridge natlab forward {dir} \"{}\" ether type ip jump {chain}",
                    port.name
                );
            }
        }
        script += &loss_script(&format!("bridge natlab {chain}"), loss_percent)?;
        nft(&self.internet, &script)?;
        port.lossy = true;
        Ok(())
    }

    /// Limits what `host` sends to the internet to `kbit_per_s` (tc's kbit: 1,000
    /// bit/s), queueing up to `buffer_ms` of it (a home uplink with a deep buffer: a
    /// token bucket filter on its router's WAN port, or on a public host's own
    /// interface).
    pub fn set_uplink(&mut self, host: &Host, kbit_per_s: u32, buffer_ms: u32) -> Result<()> {
        let (ns, dev) = match &host.router_ns {
            Some(router) => (router, "wan"),
            None => (&host.ns, "eth0"),
        };
        let out = Command::new("tc")
            .args(["-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf"])
            .args(["rate", &format!("{kbit_per_s}kbit"), "burst", "16kb"])
            .args(["latency", &format!("{buffer_ms}ms")])
            .output()
            .context("running tc (iproute2)")?;
        if !out.status.success() {
            bail!(
                "tc qdisc tbf on {ns} {dev}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The namespaces this lab made (all deleted on drop).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// A host in namespace `ns` on the internet segment with a fresh public address.
    fn public_host(&mut self, name: &str, ns: String) -> Result<Host> {
        let ip = self.attach_public(&ns, "eth0")?;
        Ok(Host {
            name: name.to_string(),
            ns,
            ip,
            wan_ip: None,
            router_ns: None,
            kind: NatKind::Public,
        })
    }

    /// Creates a namespace with loopback up, recording it for teardown.
    fn add_namespace(&mut self, ns: &str) -> Result<()> {
        ip(&format!("netns add {ns}"))?;
        self.namespaces.push(ns.to_string());
        ip(&format!("-n {ns} link set lo up")).map(drop)
    }

    /// Creates namespace `ns` plugged into the bridge through interface `ifname` with a
    /// fresh public address; returns the address.
    fn attach_public(&mut self, ns: &str, ifname: &str) -> Result<Ipv4Addr> {
        let addr = self.take_public_ip()?;
        self.add_namespace(ns)?;
        let port = format!("h{}", self.ports.len() + 1);
        let inet = self.internet.clone();
        ip(&format!(
            "-n {ns} link add {ifname} type veth peer name {port} netns {inet}"
        ))?;
        ip(&format!("-n {inet} link set {port} master br0 up"))?;
        ip(&format!("-n {ns} addr add {addr}/24 dev {ifname}"))?;
        ip(&format!("-n {ns} link set {ifname} up"))?;
        self.ports.push(BridgePort {
            ns: ns.to_string(),
            name: port,
            lossy: false,
        });
        Ok(addr)
    }

    fn take_public_ip(&mut self) -> Result<Ipv4Addr> {
        if self.next_public == 255 {
            bail!("the NAT lab ran out of public addresses");
        }
        self.next_public += 1;
        Ok(Ipv4Addr::new(198, 51, 100, self.next_public - 1))
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            delete_namespace(ns);
        }
    }
}

/// Kills whatever still runs in `ns` (processes a test started there) and deletes it.
fn delete_namespace(ns: &str) {
    if let Ok(pids) = ip(&format!("netns pids {ns}")) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }
    if let Err(e) = ip(&format!("netns del {ns}")) {
        eprintln!("natlab: could not delete namespace {ns}: {e:#}");
    }
}

/// Deletes namespaces of labs whose process is gone (a test killed before its drop).
fn sweep_stale_namespaces() {
    let Ok(list) = ip("netns list") else {
        return;
    };
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = ns
            .strip_prefix("pl")
            .and_then(|rest| rest.split_once('n'))
            .and_then(|(pid, rest)| rest.contains('-').then_some(pid))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&format!("netns del {ns}"));
        }
    }
}

/// The router's whole nftables ruleset for `kind`; `docs/nat-lab.md` explains it.
fn router_ruleset(kind: NatKind, wan: Ipv4Addr, client: Ipv4Addr) -> String {
    // Port-preserving SNAT gives one mapping for every destination; `random` a new
    // port per destination.
    let random = if kind == NatKind::Symmetric {
        " random"
    } else {
        ""
    };
    // Full cone: remember each port the client sent from (the external port, as the
    // SNAT preserves it) and forward inbound UDP to such a port to the client.
    let (set, dnat, accept_dnat, remember) = if kind == NatKind::FullCone {
        (
            "set mapped {\n    type inet_service; flags dynamic,timeout; timeout 120s;\n  }",
            format!("iifname \"wan\" udp dport @mapped dnat to {client}"),
            "iifname \"wan\" ct status dnat accept",
            "iifname \"lan\" oifname \"wan\" meta l4proto udp update @mapped { udp sport }",
        )
    } else {
        ("", String::new(), "", "")
    };
    let drop_udp = if kind == NatKind::UdpBlocked {
        "meta l4proto udp drop"
    } else {
        ""
    };
    format!(
        "table ip natlab {{
  {set}
  chain loss {{
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    {dnat}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" snat to {wan}{random}
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    jump loss
    {drop_udp}
    {remember}
    ct state established,related accept
    {accept_dnat}
    iifname \"lan\" oifname \"wan\" accept
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state established,related accept
    iifname \"wan\" drop
  }}
}}
"
    )
}

/// `percent` (0 to 100) as a number of packets per ten thousand, so 0.5 % is possible.
fn per_10k(percent: f64) -> Result<u32> {
    if !(0.0..=100.0).contains(&percent) {
        bail!("loss must be a percentage from 0 to 100, not {percent}");
    }
    Ok((percent * 100.0).round() as u32)
}

/// An nft script making `chain` (e.g. `ip natlab loss`) drop `percent` % of packets at
/// random, replacing what it did before.
fn loss_script(chain: &str, percent: f64) -> Result<String> {
    let mut script = format!("flush chain {chain}\n");
    match per_10k(percent)? {
        0 => {}
        10_000 => script += &format!("add rule {chain} drop\n"),
        n => script += &format!("add rule {chain} numgen random mod 10000 < {n} drop\n"),
    }
    Ok(script)
}

/// Runs `ip` with the whitespace-separated arguments `args`, returning its stdout.
fn ip(args: &str) -> Result<String> {
    run(Command::new("ip").args(args.split_whitespace()))
}

/// Loads an nftables script into namespace `ns`.
fn nft(ns: &str, script: &str) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}\nscript:\n{script}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a command to completion; an error names it and carries its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command as one would type it.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
