//! Shared by the simulator's test binaries.

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
