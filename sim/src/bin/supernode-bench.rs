//! `supernode-bench`: how many real attached clients one `supernode` process holds, at
//! what memory per client and idle CPU, and how many lookups/s it answers.
//!
//! Progress goes to stderr; stdout gets the per-step table and, last, exactly
//! `RESULT clients=N rss_per_client_kib=K idle_cpu_pct=C lookups_per_s=L`.
//! See docs/performance.md ("Supernode capacity") and `parley_sim::capacity`.

use clap::Parser;
use parley_sim::capacity::{self, process, Config};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    about = "Attach as many real clients as this machine holds to one supernode process; report memory per client, idle CPU and lookups/s",
    after_help = "Last line: RESULT clients=N rss_per_client_kib=K idle_cpu_pct=C lookups_per_s=L (from the last step that passed). The supernode runs with --max-connections raised to --clients + 1000; its per-address cap (256) stays and is stepped around with --per-address."
)]
struct Args {
    /// Most clients to attach (the ramp's last step).
    #[arg(long, default_value_t = 100_000)]
    clients: usize,
    /// Ramp steps (attached clients after each), comma-separated; steps at or above
    /// --clients are dropped.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,5000,10000,20000,50000"
    )]
    steps: Vec<usize>,
    /// The whole run ends within this many seconds (a step that would not fit is not
    /// started).
    #[arg(long, default_value_t = 540)]
    budget_secs: u64,
    /// Stop ramping when the machine's available memory would fall below this, MiB.
    #[arg(long, default_value_t = 2048)]
    min_free_mib: u64,
    /// Seconds of idle (every client attached, nothing asked) over which the
    /// supernode's CPU is measured.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Seconds over which lookups are counted (after 1 s of warm-up).
    #[arg(long, default_value_t = 10)]
    lookup_secs: u64,
    /// Load-generator tasks issuing lookups, one after another each.
    #[arg(long, default_value_t = 64)]
    lookup_tasks: usize,
    /// Clients per loopback source address (127.1.x.y); below the supernode's
    /// per-address connection cap of 256.
    #[arg(long, default_value_t = 200)]
    per_address: usize,
    /// Attachments in flight at once. More lose handshake datagrams to full UDP receive
    /// buffers on loopback (each costs a QUIC retransmission timeout) and attach slower.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// A step fails when more than this % of its attaches or lookups fail.
    #[arg(long, default_value_t = 1.0)]
    max_failed_pct: f64,
    /// The supernode binary. Default: `supernode` next to this executable, built
    /// with cargo (same profile) if missing.
    #[arg(long)]
    supernode: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    parley_net::logging::exit_status(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        (1..=256).contains(&args.per_address),
        "--per-address must be 1..=256 (the supernode's per-address cap)"
    );
    let supernode = match args.supernode {
        Some(path) => path,
        None => process::default_binary()?,
    };
    let config = Config {
        supernode,
        steps: args.steps,
        max_clients: args.clients,
        per_address: args.per_address,
        concurrency: args.concurrency.max(1),
        settle: Duration::from_secs(3),
        idle: Duration::from_secs(args.idle_secs),
        warmup: Duration::from_secs(1),
        lookup_window: Duration::from_secs(args.lookup_secs.max(1)),
        lookup_tasks: args.lookup_tasks.max(1),
        budget: Duration::from_secs(args.budget_secs),
        min_free_mib: args.min_free_mib,
        max_failed_pct: args.max_failed_pct,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "supernode-bench: {cores} cores, {} MiB available",
        process::mem_available_mib().unwrap_or(0)
    );
    let started = std::time::Instant::now();
    let mut progress = |line: &str| eprintln!("[{:6.1} s] {line}", started.elapsed().as_secs_f64());
    // Interrupted, the run is dropped, and with it the supernode process (killed).
    let outcome = tokio::select! {
        outcome = capacity::run(&config, &mut progress) => outcome?,
        _ = parley_net::shutdown_signal() => anyhow::bail!("interrupted"),
    };
    print!("{}", outcome.render());
    if outcome.best().is_none() {
        anyhow::bail!("no step passed: {}", outcome.stop);
    }
    Ok(())
}
