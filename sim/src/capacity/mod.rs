//! Supernode capacity, measured (`supernode-bench`, issue 9): how many real attached
//! clients one `supernode` process holds, what each costs it in memory, what it
//! spends idling with them, and how many lookups per second it answers.
//!
//! [`run`] starts the real `supernode` binary ([`process`]), then ramps: for each
//! step it attaches more clients ([`fleet`]: real QUIC attachments with their own
//! identities and signed records), lets them settle, samples the supernode's CPU over
//! an idle window and its resident memory, and saturates it with lookups of existing
//! records ([`lookups`]). The ramp stops at the first step whose attachments fail or
//! run slow, or when the time or memory budget would be overrun. The figures of the
//! last complete step make the `RESULT` line ([`report`]).

pub mod fleet;
pub mod lookups;
pub mod process;
pub mod report;

use anyhow::Result;
use fleet::{Fleet, GrowLimits};
use process::{Sample, Supernode};
use report::{Outcome, Step};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to measure, and within which budgets.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `supernode` binary to run.
    pub supernode: PathBuf,
    /// Attached clients after each step, ascending (steps above `max_clients` are
    /// dropped, and `max_clients` ends the ramp).
    pub steps: Vec<usize>,
    /// Most clients to attach.
    pub max_clients: usize,
    /// Clients per loopback source address (below the supernode's per-address cap, 256).
    pub per_address: usize,
    /// Attachments in flight at once.
    pub concurrency: usize,
    /// Wait after attaching, before measuring.
    pub settle: Duration,
    /// Idle window for the supernode's CPU with every client attached.
    pub idle: Duration,
    /// Lookups run this long before they are counted.
    pub warmup: Duration,
    /// Lookup measurement window (after the warm-up).
    pub lookup_window: Duration,
    /// Load-generator tasks issuing lookups.
    pub lookup_tasks: usize,
    /// The whole run must end within this.
    pub budget: Duration,
    /// Stop ramping when the machine's available memory would fall below this, MiB.
    pub min_free_mib: u64,
    /// A step fails when more than this share of its attach attempts, or of its
    /// lookups, failed, %.
    pub max_failed_pct: f64,
}

impl Config {
    /// The ramp: `steps` up to `max_clients`, ending at `max_clients`.
    pub fn ramp(&self) -> Vec<usize> {
        let mut ramp: Vec<usize> = self
            .steps
            .iter()
            .copied()
            .filter(|&n| n > 0 && n < self.max_clients)
            .collect();
        ramp.sort_unstable();
        ramp.dedup();
        ramp.push(self.max_clients);
        ramp
    }
}

/// Runs the benchmark; `progress` hears what is going on (for stderr).
pub async fn run(config: &Config, progress: &mut dyn FnMut(&str)) -> Result<Outcome> {
    let start = Instant::now();
    let ramp = config.ramp();
    // Room above the last step for the odd connection still closing.
    let mut server = Supernode::start(&config.supernode, config.max_clients + 1_000)?;
    progress(&format!(
        "supernode pid {} at {} ({}); ramp {ramp:?}, {} clients per source address",
        server.pid(),
        server.addr,
        config.supernode.display(),
        config.per_address
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.sample()?;
    let bench_baseline = Sample::read("self")?;
    let mut outcome = Outcome {
        baseline_rss_kib: baseline.rss_kib,
        ..Outcome::default()
    };
    let mut fleet = Fleet::new(server.addr, config.per_address);
    // Attach rate and memory per client (supernode + bench) seen so far, for budgeting.
    let (mut rate, mut kib_each) = (300.0_f64, 64.0_f64);
    let measure = config.settle + config.idle + config.warmup + config.lookup_window;
    for &target in &ramp {
        let new = target.saturating_sub(fleet.clients.len());
        let needs = Duration::from_secs_f64(new as f64 / rate) + measure;
        let left = config.budget.saturating_sub(start.elapsed());
        if needs > left {
            outcome.stop = format!(
                "time budget: {target} clients need about {:.0} s more, {:.0} s left",
                needs.as_secs_f64(),
                left.as_secs_f64()
            );
            break;
        }
        let free = process::mem_available_mib().unwrap_or(u64::MAX);
        let wanted_mib = (new as f64 * kib_each / 1024.0) as u64;
        if free.saturating_sub(wanted_mib) < config.min_free_mib {
            outcome.stop = format!(
                "memory budget: {target} clients need about {wanted_mib} MiB more, {free} MiB available, floor {} MiB",
                config.min_free_mib
            );
            break;
        }
        progress(&format!("step {target}: attaching {new} clients"));
        let limits = GrowLimits {
            concurrency: config.concurrency,
            deadline: start + config.budget.saturating_sub(measure),
            min_free_mib: config.min_free_mib,
        };
        let drops_before = process::udp_rcvbuf_errors();
        let before = (server.sample()?, Sample::read("self")?);
        let grown = fleet
            .grow(target, &limits, &mut |line| {
                progress(&format!("step {target}: {line}"))
            })
            .await?;
        let after = (server.sample()?, Sample::read("self")?);
        rate = (grown.attached as f64 / grown.elapsed.as_secs_f64()).max(1.0);
        let failed_pct =
            100.0 * grown.failed as f64 / (grown.attached + grown.failed).max(1) as f64;
        let mut step = Step {
            target,
            clients: fleet.clients.len(),
            addresses: fleet.addresses(),
            attach_s: grown.elapsed.as_secs_f64(),
            attach_per_s: rate,
            failed: grown.failed,
            attach_cpu_pct: before.0.cpu_pct_until(&after.0, grown.elapsed),
            bench_attach_cpu_pct: before.1.cpu_pct_until(&after.1, grown.elapsed),
            ..Step::default()
        };
        let broken = if let Some(why) = &grown.stopped {
            Some(why.clone())
        } else if failed_pct > config.max_failed_pct {
            let first = grown.first_error.clone().unwrap_or_default();
            Some(format!(
                "{failed_pct:.1} % of attaches failed (first: {first})"
            ))
        } else {
            None
        };
        if let Some(e) = &grown.first_error {
            progress(&format!(
                "step {target}: {} attaches failed, first: {e}",
                grown.failed
            ));
        }
        tokio::time::sleep(config.settle).await;
        progress(&format!(
            "step {target}: {} clients attached in {:.1} s; idle for {} s",
            step.clients,
            step.attach_s,
            config.idle.as_secs()
        ));
        measure_idle(&mut server, config.idle, baseline, &mut step).await?;
        let bench_now = Sample::read("self")?;
        step.bench_rss_kib = bench_now.rss_kib;
        let bench_each = bench_now.rss_kib.saturating_sub(bench_baseline.rss_kib) as f64
            / step.clients.max(1) as f64;
        kib_each = (step.rss_per_client_kib + bench_each).max(1.0);

        progress(&format!(
            "step {target}: idle CPU {:.1} %, {:.1} KiB per client; lookups for {} s",
            step.idle_cpu_pct,
            step.rss_per_client_kib,
            config.lookup_window.as_secs()
        ));
        let counted = measure_lookups(&server, &mut fleet, config, &mut step).await?;
        server.sample()?;
        progress(&format!(
            "step {target}: {:.0} lookups/s ({} failed), supernode CPU {:.0} %",
            step.lookups_per_s, step.lookups_failed, step.lookup_cpu_pct
        ));
        let asked = (counted.found + counted.failed).max(1);
        let lookups_failed_pct = 100.0 * counted.failed as f64 / asked as f64;
        let broken = broken.or_else(|| {
            (lookups_failed_pct > config.max_failed_pct || counted.found == 0)
                .then(|| format!("{} of {asked} lookups failed", counted.failed))
        });
        step.udp_drops = process::udp_rcvbuf_errors().saturating_sub(drops_before);
        step.passed = broken.is_none();
        outcome.steps.push(step);
        if let Some(why) = broken {
            outcome.stop = format!("step {target} failed: {why}");
            break;
        }
    }
    if outcome.stop.is_empty() {
        outcome.stop = format!("reached --clients {}", config.max_clients);
    }
    outcome.wall = start.elapsed();
    progress(&format!("stopping: {}", outcome.stop));
    drop(server);
    drop(fleet);
    Ok(outcome)
}

/// The idle window: the supernode's CPU over `idle` and its RSS after it, into `step`.
async fn measure_idle(
    server: &mut Supernode,
    idle: Duration,
    baseline: Sample,
    step: &mut Step,
) -> Result<()> {
    let (first, t0) = (server.sample()?, Instant::now());
    tokio::time::sleep(idle).await;
    let last = server.sample()?;
    step.idle_cpu_pct = first.cpu_pct_until(&last, t0.elapsed());
    step.rss_kib = last.rss_kib;
    let clients = step.clients.max(1) as f64;
    step.rss_per_client_kib = last.rss_kib.saturating_sub(baseline.rss_kib) as f64 / clients;
    Ok(())
}

/// Lookups at saturation over `fleet`'s clients, with both processes' CPU over the
/// counted window, into `step`.
async fn measure_lookups(
    server: &Supernode,
    fleet: &mut Fleet,
    config: &Config,
    step: &mut Step,
) -> Result<lookups::Counted> {
    let clients = Arc::new(std::mem::take(&mut fleet.clients));
    let (mut samples, pid) = (Vec::new(), server.pid().to_string());
    let counted = lookups::saturate(
        clients.clone(),
        config.lookup_tasks,
        config.warmup,
        config.lookup_window,
        &mut || samples.push((Sample::read(&pid), Sample::read("self"))),
    )
    .await;
    fleet.clients = Arc::try_unwrap(clients)
        .map_err(|_| anyhow::anyhow!("a lookup task still holds the clients"))?;
    step.lookups_per_s = counted.per_sec();
    step.lookups_failed = counted.failed;
    if let [(Ok(a), Ok(bench_a)), (Ok(b), Ok(bench_b))] = samples.as_slice() {
        step.lookup_cpu_pct = a.cpu_pct_until(b, counted.window);
        step.bench_lookup_cpu_pct = bench_a.cpu_pct_until(bench_b, counted.window);
    }
    Ok(counted)
}
