//! `relay-bench`: how many calls a relay carries on this machine within the quality
//! criterion, for Parley's relay and (with `--vs-coturn`) for coturn's `turnserver`,
//! under the same load generator (`load.rs`). Not a test: see docs/performance.md.
//!
//! Each ramp adds calls step by step; each step measures for `--secs` (≥ 20 s) and
//! passes when loss < 0.1 % and p99 one-way latency < 5 ms. The last line is
//! `RESULT parley_calls=N coturn_calls=M ratio=R` (with `--vs-coturn`) or
//! `RESULT parley_calls=N`.

mod load;
mod servers;

use anyhow::Result;
use clap::Parser;
use load::{Load, Window};
use servers::{Coturn, Parley, Server};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Relay capacity: Parley's relay, and coturn with --vs-coturn")]
struct Args {
    /// Also ramp coturn's turnserver under the same load, and compare.
    #[arg(long)]
    vs_coturn: bool,
    /// Seconds measured per step.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Calls added per step.
    #[arg(long, default_value_t = 300)]
    step: usize,
    /// Time budget of one ramp, seconds (the whole run stays within 12 minutes).
    #[arg(long, default_value_t = 320)]
    budget: u64,
}

/// Loss under this share (percent) ...
const MAX_LOSS_PCT: f64 = 0.1;
/// ... and p99 one-way latency under this (ms) pass a step.
const MAX_P99_MS: f64 = 5.0;

struct Row {
    calls: usize,
    w: Window,
    cpu_pct: f64,
    us_per_dgram: f64,
    rss_mib: f64,
    kib_per_call: f64,
}

impl Row {
    fn pass(&self) -> bool {
        self.w.loss_pct() < MAX_LOSS_PCT && self.w.p99_ms < MAX_P99_MS
    }
}

enum Target {
    Parley(Parley),
    Coturn(Coturn),
}

impl Target {
    fn server(&self) -> &Server {
        match self {
            Target::Parley(p) => &p.server,
            Target::Coturn(c) => &c.server,
        }
    }

    async fn add_call(&mut self, load: &Load) -> Result<()> {
        match self {
            Target::Parley(p) => {
                let (legs, conns) = p.call().await?;
                p.keep(conns);
                for l in legs {
                    load.add(l);
                }
            }
            Target::Coturn(c) => {
                for l in c.call().await? {
                    load.add(l);
                }
            }
        }
        Ok(())
    }
}

async fn ramp(name: &str, mut target: Target, args: &Args) -> Result<usize> {
    let started = Instant::now();
    let load = Load::start();
    let rss0 = target.server().rss_kib().unwrap_or(0);
    println!(
        "\n{name}: pid {}, {} s per step, +{} calls per step",
        target.server().pid(),
        args.secs,
        args.step
    );
    println!("| calls | sent | loss % | p50 ms | p99 ms | relay CPU % | µs/datagram | RSS MiB | KiB/call | pass |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|");
    let (mut calls, mut best, mut step_id) = (0usize, 0usize, 0u8);
    loop {
        let step_secs = args.secs + 4;
        if started.elapsed() + Duration::from_secs(step_secs) > Duration::from_secs(args.budget) {
            println!("({name}: time budget reached)");
            break;
        }
        for _ in 0..args.step {
            if let Err(e) = target.add_call(&load).await {
                println!("({name}: call set-up failed at {calls} calls: {e:#})");
                load.stop();
                return Ok(best);
            }
            calls += 1;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        step_id = step_id.wrapping_add(1).max(1);
        let cpu0 = target.server().cpu_us()?;
        let t0 = Instant::now();
        let w = load.measure(step_id, args.secs).await;
        let cpu = target.server().cpu_us()?.saturating_sub(cpu0) as f64;
        let wall_us = t0.elapsed().as_micros() as f64;
        let rss = target.server().rss_kib().unwrap_or(0);
        let row = Row {
            calls,
            w,
            cpu_pct: 100.0 * cpu / wall_us,
            us_per_dgram: cpu / w.received.max(1) as f64,
            rss_mib: rss as f64 / 1024.0,
            kib_per_call: rss.saturating_sub(rss0) as f64 / calls as f64,
        };
        println!(
            "| {} | {} | {:.3} | {:.2} | {:.2} | {:.0} | {:.2} | {:.1} | {:.1} | {} |",
            row.calls,
            row.w.sent,
            row.w.loss_pct(),
            row.w.p50_ms,
            row.w.p99_ms,
            row.cpu_pct,
            row.us_per_dgram,
            row.rss_mib,
            row.kib_per_call,
            if row.pass() { "yes" } else { "no" }
        );
        if !row.pass() {
            break;
        }
        best = calls;
    }
    load.stop();
    println!("{name}: {best} calls within the criterion (loss < {MAX_LOSS_PCT} %, p99 < {MAX_P99_MS} ms)");
    Ok(best)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "relay-bench: {} cores; load: UDP, one socket per leg, {}–{} B, {} datagrams/s per direction per call",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load::SIZES.0,
        load::SIZES.1,
        load::RATE
    );
    let dir = std::env::temp_dir().join(format!("relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let parley = ramp("parley", Target::Parley(Parley::start(&dir)?), &args).await?;
    if !args.vs_coturn {
        println!("RESULT parley_calls={parley}");
        return Ok(());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let coturn = ramp("coturn", Target::Coturn(Coturn::start()?), &args).await?;
    let ratio = if coturn == 0 {
        0.0
    } else {
        parley as f64 / coturn as f64
    };
    println!("RESULT parley_calls={parley} coturn_calls={coturn} ratio={ratio:.2}");
    Ok(())
}
