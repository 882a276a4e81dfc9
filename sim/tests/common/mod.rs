//! Shared by the simulator's test binaries.

use parley_proto::overlay::OverlayConfig;
use parley_sim::scenario::{run, Report, Scenario};

/// Runs `s` with every batch on the calling thread, then with every batch spread over
/// two threads (see `parley_sim::batch`): the two reports must agree.
pub fn on_one_core_and_two(s: &Scenario) -> (Report, Report) {
    parley_sim::batch::set_parallel_from(usize::MAX);
    let one = run(s, &mut |_| {});
    parley_sim::batch::set_parallel_from(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a thread pool");
    let two = pool.install(|| run(s, &mut |_| {}));
    parley_sim::batch::set_parallel_from(24);
    (one, two)
}

/// A small world, nothing upset (60 supernodes, 600 clients, 1 % loss, k = 8): each
/// test sets what it is about.
pub fn small_scenario() -> Scenario {
    Scenario {
        supernodes: 60,
        clients: 600,
        crash_pct: 0.0,
        churn: false,
        malicious_pct: 0.0,
        loss_pct: 1.0,
        seed: 7,
        bootstraps: 1,
        explain_misses: false,
        attacker_networks: None,
        sybil_pct: 0.0,
        peers: None,
        relay_calls: 0,
        idle: parley_sim::scenario::DEFAULT_IDLE,
        config: OverlayConfig {
            k: 8,
            ..OverlayConfig::default()
        },
    }
}
