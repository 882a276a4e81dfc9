//! `relay-choice`: how far the chosen relay's path RTT is from the best possible one
//! (issue 10). See `parley_sim::relay_choice` and docs/performance.md.

use clap::Parser;
use parley_sim::relay_choice::{run, RelayScenario};
use std::time::Instant;

/// Measure relay choice by Vivaldi coordinates, pings and load against a random and
/// the least-loaded relay, on the simulator's latency model.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Relays, placed like users (many small relays: "enter deep").
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    relays: u64,
    /// Clients.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..))]
    clients: u64,
    /// Calls between random pairs of clients.
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Other relays each relay measures RTTs to for its coordinate.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    neighbours: u64,
    /// RTT samples each relay takes (all relays together, before any client).
    #[arg(long, default_value_t = 400)]
    samples: u64,
    /// Relays each client measures (its supernodes and earlier calls' relays stand-in).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    client_neighbours: u64,
    /// RTT samples each client takes against the settled relays.
    #[arg(long, default_value_t = 40)]
    client_samples: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let s = RelayScenario {
        relays: args.relays as usize,
        clients: args.clients as usize,
        calls: args.calls as usize,
        neighbours: args.neighbours as usize,
        samples: args.samples as usize,
        client_neighbours: args.client_neighbours as usize,
        client_samples: args.client_samples as usize,
        seed: args.seed,
    };
    let r = run(&s);
    println!(
        "coordinates: median relative error of client-to-relay estimates {:.3}",
        r.estimate_error_median
    );
    println!("policy                 within 1.5x  stretch median  p90   extra ms (mean)");
    for p in &r.policies {
        println!(
            "{:<22} {:>10.2} %  {:>14.3}  {:>5.3}  {:>8.1}",
            p.name, p.within_1_5x_pct, p.stretch_median, p.stretch_p90, p.extra_ms_mean
        );
    }
    let chosen = r.policies.last().cloned().unwrap_or_default();
    let base = |i: usize| r.policies.get(i).map(|p| p.within_1_5x_pct).unwrap_or(0.0);
    println!(
        "RESULT calls={} within_1_5x_pct={:.2} stretch_median={:.3} stretch_p90={:.3} \
         coords_only_within_1_5x_pct={:.2} least_loaded_within_1_5x_pct={:.2} \
         random_within_1_5x_pct={:.2} wall_s={:.1}",
        s.calls,
        chosen.within_1_5x_pct,
        chosen.stretch_median,
        chosen.stretch_p90,
        base(2),
        base(1),
        base(0),
        started.elapsed().as_secs_f64()
    );
}
