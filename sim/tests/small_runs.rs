//! Small runs of the simulator end to end (the big ones are benchmarks, see
//! docs/performance.md).

mod common;

use parley_proto::overlay::OverlayConfig;
use parley_sim::scenario::{run, Scenario};

fn scenario() -> Scenario {
    common::small_scenario()
}

#[test]
fn after_a_20_percent_crash_almost_everyone_is_found_with_few_hops() {
    let r = run(
        &Scenario {
            crash_pct: 20.0,
            ..scenario()
        },
        &mut |line| println!("{line}"),
    );
    assert_eq!(r.total, 600);
    assert!(r.found * 100 >= r.total * 99, "{} of {}", r.found, r.total);
    assert!(r.hops_median <= 5);
    assert!(r.replicas_mean >= 8.0, "{}", r.replicas_mean);
    // Nothing republishes while nothing changes.
    assert!(r.rpcs_per_sn_min_idle < 5.0, "{}", r.rpcs_per_sn_min_idle);
}

/// Progress lines say something: no `crashed 0 supernodes` in a run without a crash,
/// no `misses by cause:` without a cause (with a crash, the crash is said).
#[test]
fn a_run_without_a_crash_or_misses_prints_no_empty_lines() {
    let mut lines = Vec::new();
    let r = run(&scenario(), &mut |line| lines.push(line));
    assert!(
        !lines.iter().any(|l| l.starts_with("crashed")),
        "{lines:#?}"
    );
    let misses: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("misses by cause:"))
        .collect();
    assert!(misses.iter().all(|l| l.contains('=')), "{misses:?}");
    if r.found == r.total {
        assert!(misses.is_empty(), "{misses:?}");
    }
    let mut lines = Vec::new();
    let crash = Scenario {
        crash_pct: 20.0,
        ..scenario()
    };
    run(&crash, &mut |line| lines.push(line));
    assert!(lines.iter().any(|l| l.starts_with("crashed 12 supernodes")));
}

#[test]
fn equal_seeds_give_equal_runs() {
    let a = run(&scenario(), &mut |_| {});
    let b = run(&scenario(), &mut |_| {});
    assert_eq!((a.found, a.rpcs), (b.found, b.rpcs));
}

/// Messages of one millisecond are delivered on several cores (`batch`): a run must
/// come out the same whether every batch is spread over two threads or none is.
#[test]
fn spreading_batches_over_cores_changes_nothing() {
    let s = Scenario {
        crash_pct: 20.0,
        ..scenario()
    };
    let (one, two) = common::on_one_core_and_two(&s);
    assert_eq!(
        (one.found, one.total, one.rpcs, one.hops_median),
        (two.found, two.total, two.rpcs, two.hops_median)
    );
    assert!(one.found > 0);
}

/// Issue 9: 20 % colluding liars (drop, name only each other, refuse stores).
/// Disjoint-path lookups find more than single-path ones when liars got into the
/// routing tables through the bootstrap (one random bootstrap each), and with three
/// bootstraps each, as operators are told to configure, at least 99 % are found.
#[test]
fn disjoint_paths_and_several_bootstraps_keep_liars_from_hiding_records() {
    let malicious = |seed: u64, paths: usize, bootstraps: usize| {
        let s = scenario();
        run(
            &Scenario {
                seed,
                malicious_pct: 20.0,
                bootstraps,
                config: OverlayConfig {
                    disjoint_paths: paths,
                    ..s.config.clone()
                },
                ..s
            },
            &mut |_| {},
        )
    };
    // One small run is noisy (over seeds 1-10, three paths found more in 7, about
    // 1.3 % more in all): compare four runs' totals.
    let found = |paths: usize| -> u64 { (1..=4).map(|seed| malicious(seed, paths, 1).found).sum() };
    let (one, three) = (found(1), found(3));
    assert!(three > one, "{three} vs {one}");
    let r = malicious(scenario().seed, 3, 3);
    assert!(r.found * 100 >= r.total * 99, "{} of {}", r.found, r.total);
}

/// Issue 10: 20 % Sybils minted next to target clients' keys, from two /16s,
/// accepting stores and dropping them. Without the lookups' limit per network they
/// hide most lookups of their targets; with it nearly all are found. A world this
/// small has two targets, each hidden or not as a whole, so three seeds are summed.
#[test]
fn sybils_next_to_targets_hide_them_only_without_the_lookup_limit() {
    let sybil = |lookup_diversity: bool, seed: u64| {
        let s = scenario();
        run(
            &Scenario {
                supernodes: 120,
                sybil_pct: 20.0,
                bootstraps: 3,
                seed,
                attacker_networks: Some(parley_sim::sybil::DEFAULT_NETWORKS),
                config: OverlayConfig {
                    lookup_diversity,
                    ..s.config.clone()
                },
                ..s
            },
            &mut |_| {},
        )
    };
    let (mut found, mut total) = (0, 0);
    for seed in [7, 1, 3] {
        let (open, limited) = (sybil(false, seed), sybil(true, seed));
        assert_eq!(open.targets, 2);
        assert_eq!(
            open.total_targeted,
            2 * u64::from(parley_sim::sybil::TARGET_LOOKUPS)
        );
        found += open.found_targeted;
        total += open.total_targeted;
        assert_eq!(
            limited.found_targeted, limited.total_targeted,
            "seed {seed}"
        );
        assert!(
            limited.found * 100 >= limited.total * 99,
            "seed {seed}: {} of {}",
            limited.found,
            limited.total
        );
    }
    assert!(found * 2 < total, "{found} of {total}");
}

#[test]
fn a_whole_idle_interval_costs_the_refreshes_and_nothing_more() {
    // Two minutes idle: nothing is due. Forty: every client refreshed twice (each a
    // FindNode lookup and k stores), and the records are still all found afterwards.
    let short = run(&scenario(), &mut |_| {});
    assert_eq!(short.rpcs_per_sn_min_idle, 0.0);
    let mut lines = Vec::new();
    let long = run(
        &Scenario {
            idle: std::time::Duration::from_secs(2400),
            ..scenario()
        },
        &mut |line| lines.push(line),
    );
    let s = scenario();
    let idle = lines
        .iter()
        .find(|l| l.starts_with("rpcs in idle:"))
        .expect("an idle line");
    let stores: f64 = idle
        .split("store ")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .expect("a store count");
    // Each client's record goes to k holders at each refresh (20 min ± 10 %): about
    // k stores per client every 20 minutes, so 2 refreshes in 40 minutes, some
    // falling just outside (a store lost to the 1 % loss is retried elsewhere).
    let per_client = stores / s.clients as f64;
    let k = s.config.k as f64;
    assert!(
        (1.5 * k..=2.6 * k).contains(&per_client),
        "{per_client} stores per client in 40 min: {idle}"
    );
    assert!(long.rpcs_per_sn_min_idle > 0.0);
    assert_eq!(
        long.found, long.total,
        "records stay found after a long idle"
    );
}
