//! `overlay-sim`: the overlay at internet scale, on a virtual clock.
//!
//! Last line: `RESULT found=F total=T pct=P hops_median=H hops_p99=Q rss_mib=R wall_s=W`
//! followed by further key=value pairs (background RPCs per supernode per minute,
//! replicas, virtual time, the Sybils' targets' found rate; with `--peers`, the peers'
//! departures and the relay choice: `relay_within_1_5x_pct`, `relay_stretch_median`, ...).
//! See docs/performance.md for the benchmark runs.

use clap::Parser;
use mimalloc::MiMalloc;
use parley_proto::overlay::OverlayConfig;
use parley_sim::peers::PeerConfig;
use parley_sim::scenario::{run, Scenario};
use std::time::{Duration, Instant};

/// mimalloc: the run makes and frees hundreds of millions of small vectors (contact
/// lists, lookups, messages) across 4–5 GB of state; glibc's allocator took ~15 % of
/// the CPU in profiles.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Keeps freed memory in the process: mimalloc returns it to the system 10 ms after
/// it is freed (its `purge_delay`), and a run that frees and allocates all the time
/// got it back as fresh pages the kernel zeroed (`clear_page_erms`, 4.6 % of the
/// samples at 10,000 supernodes / 100,000 clients; 3–6 % less CPU without it in two
/// side-by-side runs, docs/performance.md); the peak RSS is what it was. mimalloc reads its options from the environment when the process
/// starts (and this crate forbids the `unsafe` its API needs), so the run starts
/// itself again with `MIMALLOC_PURGE_DELAY=-1` unless the caller chose a value.
/// If that fails the run goes on as it is.
fn never_purge() {
    use std::os::unix::process::CommandExt;
    const OPTION: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(OPTION).is_some() {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        let error = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(OPTION, "-1")
            .exec();
        eprintln!("overlay-sim: could not restart with {OPTION}=-1 ({error}); going on");
    }
}

#[derive(Parser, Debug)]
#[command(about = "Simulate the Parley overlay at scale with the real proto machines")]
struct Args {
    /// Supernodes (at least 2).
    #[arg(long, default_value_t = 200, value_parser = at_least::<2>)]
    supernodes: usize,
    /// Clients (each attaches to two supernodes and publishes a record; at least 1).
    #[arg(long, default_value_t = 2_000, value_parser = at_least::<1>)]
    clients: usize,
    /// Percentage of supernodes that crash at once after publication.
    #[arg(long, default_value_t = 0.0, value_parser = percent)]
    crash: f64,
    /// Continuous churn (20 % of supernodes replaced per republish interval,
    /// heavy-tailed sessions, clients leaving and coming back) instead of a crash.
    #[arg(long)]
    churn: bool,
    /// Percentage of malicious supernodes (drop, lie with old records, refuse stores).
    #[arg(long, default_value_t = 0.0, value_parser = percent)]
    malicious: f64,
    /// Percentage of messages lost.
    #[arg(long, default_value_t = 1.0, value_parser = percent)]
    loss: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replication factor and bucket size, 1–64 (see docs/performance.md for why the
    /// simulator's default is Mainline DHT's 8 rather than the supernode's 20).
    #[arg(long, default_value_t = 8, value_parser = at_most::<64>)]
    k: usize,
    /// Disjoint paths per lookup (S/Kademlia's d; the supernode's default is 3;
    /// 1–8).
    #[arg(long, default_value_t = 3, value_parser = paths)]
    paths: usize,
    /// RPCs each lookup path keeps in flight (Kademlia's alpha, 1–64; the
    /// supernode's default is 3).
    #[arg(long, default_value_t = 3, value_parser = at_most::<64>)]
    alpha: usize,
    /// Disjoint paths of a client's publication (the supernode's default is 3; see
    /// docs/performance.md for why the simulator's is 1).
    #[arg(long, default_value_t = 1, value_parser = paths)]
    publish_paths: usize,
    /// Earlier supernodes each new one joins through (random, liars included), like
    /// an operator's repeatable --join (at least 1).
    #[arg(long, default_value_t = 3, value_parser = at_least::<1>)]
    bootstraps: usize,
    /// Print one line per missed lookup to stderr: the record's sequence numbers
    /// held by the live supernodes closest to the key, and the origin's copy.
    #[arg(long)]
    explain_misses: bool,
    /// The malicious supernodes live in this many /16 networks (1–255), as an
    /// attacker with few addresses would; by default they are spread like honest ones.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    attacker_networks: Option<u8>,
    /// Percentage of supernodes that are Sybils placed next to target clients' keys
    /// (k + 4 per target, closer than any honest supernode where the attacker's
    /// addresses allow: a position follows the key and the IP, BEP 42), at addresses
    /// of --attacker-networks /16s (default 2 with --sybil) whose prefixes land
    /// there, accepting stores and dropping them, naming only fellow Sybils. Adds pct_targeted, found_targeted,
    /// total_targeted and targets to the RESULT line.
    #[arg(long, default_value_t = 0.0, value_parser = percent)]
    sybil: f64,
    /// Turn off the routing tables' per-network limits (to measure what they buy).
    #[arg(long)]
    no_ip_diversity: bool,
    /// Turn off only the lookups' per-network limit (issue 10; to measure what it
    /// buys against --sybil).
    #[arg(long)]
    no_lookup_diversity: bool,
    /// Seconds of virtual time (1–86400) the overlay runs idle after publication, to
    /// measure its background RPCs (`rpcs_per_sn_min_idle`, averaged over this window).
    /// The window starts right after publication, when for about 18 minutes only pings
    /// are due, so the figure moves with its length (at 200 supernodes: 16.0 at 1200,
    /// 14.9 at 1800, 17.8 at 2400, 19.1 at 3600); compare sizes at one length, e.g.
    /// 2400 (two of every client's 20-min refreshes).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_secs: u64,
    /// Threads for the parallel parts: key generation, signing, verification, and each
    /// 5 ms window's deliveries to the supernodes (default: one per core; 1 runs the
    /// whole simulation on one thread, with the same result).
    #[arg(long)]
    threads: Option<usize>,
    /// Percentage of supernodes that are promoted peers (issue 10); the rest are an
    /// operator tier that stays up. Peers serve for the rest of a heavy-tailed user
    /// session, leave (demoted, handing their records over, or crashed) and are
    /// replaced by newly promoted ones for one republish interval, with lookups in its
    /// last third; instead of --crash and --churn. Adds the relay choice among the
    /// live peers' relays to the report.
    #[arg(long, value_parser = percent)]
    peers: Option<f64>,
    /// Median of a user's whole session in seconds (with --peers; a peer is
    /// promoted after 1800 s online, so it serves the rest of such a session).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    peer_session_median: u64,
    /// Percentage of peer departures that are crashes rather than demotions (with
    /// --peers).
    #[arg(long, default_value_t = 20.0, value_parser = percent)]
    peer_crash: f64,
    /// Calls sampled between online clients at the end, choosing among the live
    /// peers' relays (with --peers).
    #[arg(long, default_value_t = 10_000)]
    relay_calls: usize,
}

/// A percentage, 0–100.
/// A count of at least `MIN`.
fn at_least<const MIN: usize>(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= MIN => Ok(n),
        Ok(n) => Err(format!("{n} is less than {MIN}")),
        Err(e) => Err(format!("{s} is not a count ({e})")),
    }
}

/// A count from 1 to `MAX`: larger ones would size per-lookup and per-bucket
/// structures beyond any memory (`--k 1000000000` aborted allocating 520 GiB).
fn at_most<const MAX: usize>(s: &str) -> Result<usize, String> {
    match at_least::<1>(s)? {
        n if n <= MAX => Ok(n),
        n => Err(format!("{n} is more than {MAX}")),
    }
}

/// Disjoint paths: 1 to `lookup::MAX_PATHS` (the overlay would clamp others).
fn paths(s: &str) -> Result<usize, String> {
    let max = parley_proto::overlay::lookup::MAX_PATHS;
    match at_least::<1>(s)? {
        n if n <= max => Ok(n),
        n => Err(format!("{n} is more than {max} paths")),
    }
}

fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a percentage (0-100)"))
    }
}

fn main() -> std::process::ExitCode {
    parley_net::logging::exit_status(simulate())
}

fn simulate() -> anyhow::Result<()> {
    never_purge();
    let args = Args::parse();
    // The event loop itself runs on one of the pool's threads (`install`), so that it
    // works in the parallel parts of each batch instead of waiting for two other
    // threads: as many busy threads as cores.
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n);
    }
    let pool = pool.build()?;
    if args.malicious + args.sybil >= 100.0 {
        anyhow::bail!(
            "--malicious and --sybil together leave no honest supernode (they must add up \
             to less than 100 %)"
        );
    }
    // The scenario crashes round(PCT % of the supernodes): a share that rounds up to
    // all of them leaves nobody to look anybody up from, as --crash 100 would.
    let crashed = (args.crash / 100.0 * args.supernodes as f64).round();
    if crashed >= args.supernodes as f64 {
        anyhow::bail!(
            "--crash {} of {} supernodes crashes all of them: no supernode is left to look \
             anybody up from",
            args.crash,
            args.supernodes
        );
    }
    if args.loss >= 100.0 {
        anyhow::bail!("--loss 100 loses every message: nothing would be measured");
    }
    if args.churn && args.crash > 0.0 {
        anyhow::bail!("--churn replaces supernodes all the time: not with --crash");
    }
    if args.peers.is_some() && (args.churn || args.crash > 0.0) {
        anyhow::bail!("--peers is its own kind of churn: not with --churn or --crash");
    }
    parley_sim::memory::check_fits(
        args.supernodes as u64,
        args.clients as u64,
        parley_sim::capacity::process::mem_available_mib(),
    )?;
    let started = Instant::now();
    let scenario = Scenario {
        supernodes: args.supernodes,
        clients: args.clients,
        crash_pct: args.crash,
        churn: args.churn,
        malicious_pct: args.malicious,
        loss_pct: args.loss,
        seed: args.seed,
        bootstraps: args.bootstraps,
        explain_misses: args.explain_misses,
        attacker_networks: args
            .attacker_networks
            .or((args.sybil > 0.0).then_some(parley_sim::sybil::DEFAULT_NETWORKS)),
        sybil_pct: args.sybil,
        peers: args.peers.map(|pct| PeerConfig {
            share: pct / 100.0,
            median_session: Duration::from_secs(args.peer_session_median),
            crash_share: args.peer_crash / 100.0,
            malicious: args.malicious / 100.0,
        }),
        relay_calls: args.relay_calls,
        idle: Duration::from_secs(args.idle_secs),
        config: OverlayConfig {
            k: args.k,
            alpha: args.alpha,
            disjoint_paths: args.paths,
            publish_paths: args.publish_paths,
            ip_diversity: !args.no_ip_diversity,
            lookup_diversity: !args.no_lookup_diversity,
            ..OverlayConfig::default()
        },
    };
    let r = pool.install(|| run(&scenario, &mut |line| println!("{line}")));
    let pct = 100.0 * r.found as f64 / r.total.max(1) as f64;
    // With --peers: the peers' departures and the relay choice, after the keys above.
    let mut extra = String::new();
    if let Some(p) = &r.peers {
        extra += &format!(
            " peers_live={} demoted={} crashed={} promoted={} handed_over={} handed_over_stored={}",
            r.live_peers, p.demoted, p.crashed, p.promoted, p.handed_over, p.handed_over_stored
        );
    }
    if let Some(relays) = &r.relays {
        let c = relays.chosen();
        extra += &format!(
            " relay_calls={} relay_within_1_5x_pct={:.2} relay_stretch_median={:.3} \
             relay_stretch_p90={:.3}",
            args.relay_calls, c.within_1_5x_pct, c.stretch_median, c.stretch_p90
        );
    }
    println!(
        "RESULT found={} total={} pct={:.3} hops_median={} hops_p99={} rss_mib={} wall_s={:.1} \
         rpcs_per_sn_min_idle={:.1} rpcs_per_sn_min_upset={:.1} replicas_mean={:.1} rpcs={} \
         replaced={} virtual_s={:.0} cpu_s={:.1} pct_targeted={:.3} found_targeted={} \
         total_targeted={} targets={}{extra}",
        r.found,
        r.total,
        pct,
        r.hops_median,
        r.hops_p99,
        parley_sim::peak_rss_mib(),
        started.elapsed().as_secs_f64(),
        r.rpcs_per_sn_min_idle,
        r.rpcs_per_sn_min_upset,
        r.replicas_mean,
        r.rpcs,
        r.replaced,
        r.virtual_s,
        parley_sim::cpu_seconds(),
        100.0 * r.found_targeted as f64 / r.total_targeted.max(1) as f64,
        r.found_targeted,
        r.total_targeted,
        r.targets
    );
    // A run that looked nobody up measured nothing: not a success.
    if r.total == 0 {
        anyhow::bail!("no lookup was started (no client had a confirmed publication)");
    }
    Ok(())
}
