//! File transfer, client side (issue 17). The protocol is the sans-IO
//! `parley_proto::transfer` core; this is its shell: storage ([`storage`]), the loop
//! that runs a `Swarm` over byte streams ([`link`]), the start of a transfer
//! connection ([`hello`]) directly or through a relay ([`relayed`]), the file offer in
//! call signalling ([`offer`]), pacing around calls in progress ([`pace`]), and the two
//! commands' sides: `parley send` ([`send`]) and `online --accept-files` ([`receive`]).

pub mod hello;
pub mod link;
pub mod offer;
pub mod pace;
pub mod receive;
pub mod relayed;
pub mod send;
pub mod storage;

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Transfers in progress by root (hex), with their latest progress, for `status`.
pub type Table = Arc<Mutex<BTreeMap<String, Value>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The swarm's rules for a transfer to `recipients` recipients: the defaults (the
/// seed's), except that with a single recipient there is nobody to spread chunks to, so
/// the sender does not super-seed and the recipient keeps a full pipeline to it
/// (measured: scripts/transfer-bench.sh, docs/performance.md).
pub fn swarm_config(recipients: usize) -> parley_proto::transfer::SwarmConfig {
    let swarm = recipients > 1;
    parley_proto::transfer::SwarmConfig {
        super_seed: swarm,
        spare_origin: swarm,
        ..Default::default()
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a whole file, in hex (read on a blocking thread).
pub async fn sha256_file(path: &std::path::Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex(&h.finalize()))
    })
    .await?
}
