//! Lookups at saturation: several tasks each issue one `Lookup` after another, over
//! random attached clients' connections, for the records of other attached clients
//! (records that exist), as the client's `lookup` does (one request stream each).

use crate::capacity::fleet::{Client, ATTACH_TIMEOUT};
use parley_net::request;
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one measurement window saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counted {
    /// Lookups answered with the record asked for.
    pub found: u64,
    /// Lookups that failed, timed out or came back without the record.
    pub failed: u64,
    /// The window.
    pub window: Duration,
}

impl Counted {
    /// Records found per second.
    pub fn per_sec(&self) -> f64 {
        self.found as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Counters {
    found: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// Runs `tasks` load tasks over `clients` for `warmup` (not counted), then counts
/// for `window`, and calls `at_window` at its start and end (to sample the
/// supernode's CPU over exactly the counted window).
pub async fn saturate(
    clients: Arc<Vec<Client>>,
    tasks: usize,
    warmup: Duration,
    window: Duration,
    at_window: &mut dyn FnMut(),
) -> Counted {
    let counters = Arc::new(Counters::default());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks.max(1) {
        let (clients, counters) = (clients.clone(), counters.clone());
        set.spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            while !counters.stop.load(Ordering::Relaxed) && !clients.is_empty() {
                let via = &clients[rng.gen_range(0..clients.len())];
                let wanted = clients[rng.gen_range(0..clients.len())].id;
                let asked = ClientToSupernode::Lookup(wanted);
                let ok = matches!(
                    request(&via.conn, &asked, ATTACH_TIMEOUT).await,
                    Ok(SupernodeToClient::Found(r)) if r.record.id == wanted
                );
                let counter = if ok {
                    &counters.found
                } else {
                    &counters.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(warmup).await;
    let (found0, failed0) = (
        counters.found.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
    );
    at_window();
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let counted = Counted {
        found: counters.found.load(Ordering::Relaxed) - found0,
        failed: counters.failed.load(Ordering::Relaxed) - failed0,
        window: start.elapsed(),
    };
    at_window();
    counters.stop.store(true, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
    counted
}
