//! Relay capacity benchmark (not a test):
//!
//! ```sh
//! cargo run --release -p parley-relay --bin relay-bench
//! ```
//!
//! For an increasing number N of synthetic calls, each leg sends 50 datagrams/s of
//! Opus-like sizes (80–120 bytes, a send timestamp inside) to the other leg, through
//! an in-process relay on loopback; then the same load through a trivial UDP forwarder
//! (one socket, a fixed address map) as the baseline. Reported per N: loss %, p50 and
//! p99 one-way latency through each, and relay/baseline ratios; at the end, the largest
//! N with < 1 % loss. Results are in docs/performance.md.
//!
//! The relay and the forwarder run on a runtime of their own (two worker threads); the
//! load generator on another. On a 2-core machine they share the CPU, so the figures
//! are a floor for a dedicated relay host, but the ratio to the baseline is fair: both
//! forwarders see the same generator competing with them.

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use parley_proto::presence::Contact;
use parley_proto::relay::{CallId, DropReason, RelayConfig, RelayToken};
use parley_proto::Identity;
use parley_relay::{join_relay, RelayParams};
use quinn::Connection;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Relay capacity benchmark: loss and added latency for N concurrent calls.
#[derive(Debug, Parser)]
struct Args {
    /// Call counts to try, in order (the run stops early once loss passes --stop-loss).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,100,200,300,400,600,800"
    )]
    calls: Vec<usize>,
    /// Seconds of traffic per measurement.
    #[arg(long, default_value_t = 4)]
    secs: u64,
    /// Stop ramping up once the relay loses (or delivers late) more than this many percent.
    #[arg(long, default_value_t = 5.0)]
    stop_loss: f64,
}

const PACKETS_PER_SEC: u64 = 50;
const MIN_LEN: usize = 80;
const MAX_LEN: usize = 120;
/// Concurrent handshakes while setting up calls.
const SETUP_PARALLELISM: usize = 32;
const DRAIN: Duration = Duration::from_millis(500);
/// Audio arriving later than this is useless to a call (ITU-T G.114's one-way budget).
const LATE_US: u32 = 150_000;

/// One direction's send side or receive side.
#[derive(Clone)]
enum Pipe {
    Quic(Connection),
    Udp(Arc<UdpSocket>),
}

impl Pipe {
    async fn send(&self, datagram: Bytes) {
        // A failed send is a lost packet; the loss count sees it.
        match self {
            Pipe::Quic(c) => drop(c.send_datagram(datagram)),
            Pipe::Udp(s) => drop(s.send(&datagram).await),
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> Option<u64> {
        let ts = |b: &[u8]| {
            b.get(..8)
                .and_then(|h| h.try_into().ok())
                .map(u64::from_be_bytes)
        };
        match self {
            Pipe::Quic(c) => c.read_datagram().await.ok().and_then(|d| ts(&d)),
            Pipe::Udp(s) => {
                let n = s.recv(buf).await.ok()?;
                ts(&buf[..n])
            }
        }
    }
}

/// What one measurement found.
#[derive(Debug, Default)]
struct Outcome {
    sent: u64,
    received: u64,
    /// Relay-runtime CPU spent during the traffic.
    cpu_ns: Option<u64>,
    /// How long the traffic (and its drain) took.
    wall: Duration,
    /// One-way latencies in microseconds, sorted.
    latencies: Vec<u32>,
}

impl Outcome {
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64
    }

    /// Percent of the datagrams sent that arrived, but too late to be played.
    fn late(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        let late = self.latencies.len() - self.latencies.partition_point(|&l| l <= LATE_US);
        100.0 * late as f64 / self.sent as f64
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }
}

async fn sender(pipe: Pipe, epoch: Instant, secs: u64, seed: u8) -> u64 {
    let template: Vec<u8> = (0..MAX_LEN).map(|_| rand::random::<u8>()).collect();
    let period = Duration::from_millis(1000 / PACKETS_PER_SEC);
    // Random phase, so the legs' packets do not all leave in the same millisecond.
    tokio::time::sleep(period.mul_f64(rand::random::<f64>())).await;
    let mut tick = tokio::time::interval(period);
    let total = secs * PACKETS_PER_SEC;
    for seq in 0..total {
        tick.tick().await;
        let len = MIN_LEN + (seq as usize * 13 + seed as usize) % (MAX_LEN - MIN_LEN + 1);
        let mut packet = template[..len].to_vec();
        let now = epoch.elapsed().as_nanos() as u64;
        packet[..8].copy_from_slice(&now.to_be_bytes());
        pipe.send(Bytes::from(packet)).await;
    }
    total
}

async fn receiver(pipe: Pipe, epoch: Instant, mut stop: watch::Receiver<bool>) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = stop.changed() => return latencies,
            got = pipe.recv(&mut buf) => match got {
                Some(sent) => {
                    let now = epoch.elapsed().as_nanos() as u64;
                    latencies.push((now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32);
                }
                None if matches!(pipe, Pipe::Quic(_)) => return latencies,
                None => {}
            },
        }
    }
}

/// Runs the load over `pairs` (each leg's pipe, both directions) and measures it.
async fn measure(pairs: Vec<(Pipe, Pipe)>, secs: u64) -> Outcome {
    let epoch = Instant::now();
    let cpu_before = relay_cpu_ns();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut senders = JoinSet::new();
    let mut receivers = JoinSet::new();
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        for (j, leg) in [a, b].into_iter().enumerate() {
            senders.spawn(sender(leg.clone(), epoch, secs, (i * 2 + j) as u8));
            receivers.spawn(receiver(leg, epoch, stop_rx.clone()));
        }
    }
    let mut outcome = Outcome::default();
    while let Some(sent) = senders.join_next().await {
        outcome.sent += sent.unwrap_or(0);
    }
    tokio::time::sleep(DRAIN).await;
    let _ = stop_tx.send(true);
    while let Some(got) = receivers.join_next().await {
        outcome.latencies.extend(got.unwrap_or_default());
    }
    outcome.received = outcome.latencies.len() as u64;
    outcome.cpu_ns = relay_cpu_ns()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    outcome.wall = epoch.elapsed();
    outcome.latencies.sort_unstable();
    outcome
}

/// Sets up `n` relayed calls: two fresh identities and endpoints per call.
async fn relay_calls(n: usize, relay: Contact, issuer: &Identity) -> Result<Vec<(Pipe, Pipe)>> {
    let gate = Arc::new(Semaphore::new(SETUP_PARALLELISM));
    let mut setups = JoinSet::new();
    for _ in 0..n {
        let gate = gate.clone();
        let issuer = issuer.clone();
        setups.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let (a, b) = (Identity::generate(), Identity::generate());
            let token = RelayToken {
                call_id: CallId::random(),
                parties: [a.peer_id(), b.peer_id()],
                relay: relay.id,
                issuer: issuer.peer_id(),
                expires_at: parley_net::clock::now() + Duration::from_secs(300),
            }
            .sign(&issuer);
            let t = Duration::from_secs(20);
            let bind: SocketAddr = "127.0.0.1:0".parse()?;
            let (ea, eb) = (
                quinn::Endpoint::client(bind)?,
                quinn::Endpoint::client(bind)?,
            );
            let mut leg_a = join_relay(&ea, &a, relay, &token, t).await?;
            let leg_b = join_relay(&eb, &b, relay, &token, t).await?;
            leg_a.wait_paired(t).await?;
            anyhow::Ok((Pipe::Quic(leg_a.conn), Pipe::Quic(leg_b.conn)))
        });
    }
    let mut pairs = Vec::with_capacity(n);
    while let Some(done) = setups.join_next().await {
        pairs.push(
            done.context("setup task")?
                .context("setting up a relayed call")?,
        );
    }
    Ok(pairs)
}

fn close_all(pairs: &[(Pipe, Pipe)]) {
    for pipe in pairs.iter().flat_map(|(a, b)| [a, b]) {
        if let Pipe::Quic(c) = pipe {
            c.close(0u32.into(), b"bench done");
        }
    }
}

/// The baseline: one UDP socket forwarding each leg's packets to its partner.
async fn udp_calls(
    n: usize,
    relay_rt: &Runtime,
) -> Result<(Vec<(Pipe, Pipe)>, tokio::task::JoinHandle<()>)> {
    // The same kernel buffers as the relay's socket, so the comparison is fair.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let _ = socket.set_recv_buffer_size(parley_relay::endpoint::SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(parley_relay::endpoint::SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let forwarder = Arc::new(UdpSocket::from_std(socket.into())?);
    let at = forwarder.local_addr()?;
    let mut routes = HashMap::new();
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        let a = UdpSocket::bind("127.0.0.1:0").await?;
        let b = UdpSocket::bind("127.0.0.1:0").await?;
        let (aa, ba) = (a.local_addr()?, b.local_addr()?);
        routes.insert(aa, ba);
        routes.insert(ba, aa);
        a.connect(at).await?;
        b.connect(at).await?;
        pairs.push((Pipe::Udp(Arc::new(a)), Pipe::Udp(Arc::new(b))));
    }
    let task = relay_rt.spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((len, from)) = forwarder.recv_from(&mut buf).await {
            if let Some(to) = routes.get(&from) {
                let _ = forwarder.send_to(&buf[..len], to).await;
            }
        }
    });
    Ok((pairs, task))
}

/// CPU time (ns) of the relay runtime's threads so far, from Linux's schedstat: the
/// relay's own cost, whatever else the machine is doing. `None` off Linux.
fn relay_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim_end() == "relay-rt" {
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// Percent of one core the relay runtime used during the traffic.
fn core_share(o: &Outcome) -> f64 {
    o.cpu_ns
        .map_or(f64::NAN, |ns| 100.0 * ns as f64 / o.wall.as_nanos() as f64)
}

/// Microseconds of relay-runtime CPU per forwarded datagram.
fn cpu_per_packet(o: &Outcome, forwarded: u64) -> f64 {
    match o.cpu_ns {
        Some(ns) if forwarded > 0 => ns as f64 / 1000.0 / forwarded as f64,
        _ => f64::NAN,
    }
}

struct Bench {
    relay_rt: Runtime,
    load_rt: Runtime,
    bound: parley_relay::Bound,
    issuer: Identity,
    secs: u64,
}

impl Bench {
    fn start(secs: u64) -> Result<Bench> {
        let relay_rt = Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("relay-rt")
            .enable_all()
            .build()?;
        let load_rt = Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("load-rt")
            .enable_all()
            .build()?;
        let issuer = Identity::generate();
        let params = RelayParams {
            identity: Identity::generate(),
            listen: "127.0.0.1:0".parse()?,
            trusted: vec![issuer.peer_id()],
            config: RelayConfig {
                max_legs: 1_000_000,
                ..RelayConfig::default()
            },
            supernodes: vec![],
            advertise: None,
            data_listen: None,
            data_threads: 0,
        };
        // The relay runs until the process exits.
        let (stop, stop_rx) = watch::channel(false);
        std::mem::forget(stop);
        let (bound, serve) = relay_rt.block_on(parley_relay::start(params, stop_rx))?;
        relay_rt.spawn(serve);
        Ok(Bench {
            relay_rt,
            load_rt,
            bound,
            issuer,
            secs,
        })
    }

    /// N calls through the relay: the outcome and the datagrams the relay forwarded.
    fn relayed(&self, n: usize) -> Result<(Outcome, u64, Vec<String>)> {
        let relay = Contact {
            id: self.bound.id,
            addr: self.bound.quic,
        };
        let pairs = self.load_rt.block_on(relay_calls(n, relay, &self.issuer))?;
        let before = self.bound.stats();
        let outcome = self.load_rt.block_on(measure(pairs.clone(), self.secs));
        let after = self.bound.stats();
        close_all(&pairs);
        let drops = DropReason::ALL
            .iter()
            .filter_map(|r| {
                let d = after.drops(*r) - before.drops(*r);
                (d > 0).then(|| format!("{r}={d}"))
            })
            .collect();
        // Let the relay see the closes before the next point.
        std::thread::sleep(Duration::from_millis(500));
        Ok((
            outcome,
            after.forwarded_packets - before.forwarded_packets,
            drops,
        ))
    }

    /// N calls through the trivial UDP forwarder.
    fn baseline(&self, n: usize) -> Result<Outcome> {
        self.load_rt.block_on(async {
            let (pairs, task) = udp_calls(n, &self.relay_rt).await?;
            let outcome = measure(pairs, self.secs).await;
            task.abort();
            anyhow::Ok(outcome)
        })
    }
}

/// The largest N such that every point up to it met a criterion.
#[derive(Default)]
struct Largest {
    failed: bool,
    n: Option<usize>,
}

impl Largest {
    fn note(&mut self, n: usize, ok: bool) {
        self.failed |= !ok;
        if !self.failed {
            self.n = Some(n);
        }
    }

    fn show(&self) -> String {
        self.n.map_or("none".into(), |n| n.to_string())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bench = Bench::start(args.secs)?;
    println!(
        "relay-bench: {PACKETS_PER_SEC} pkt/s per leg each way, {MIN_LEN}-{MAX_LEN} B, {} s per point, {} cores",
        args.secs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "loss% = never arrived; late% = arrived > {} ms after sending; us/pkt = forwarder CPU per datagram; core% = forwarder CPU in % of one core",
        LATE_US / 1000
    );
    let head = ["loss%", "late%", "p50ms", "p99ms", "us/pkt"];
    println!(
        "{:>5} {:>6} | relay {:>6} {:>6} {:>7} {:>7} {:>6} {:>5} | udp {:>6} {:>6} {:>6} {:>6} {:>6} | {:>5} {:>5} {:>5}",
        "calls", "pkt/s", head[0], head[1], head[2], head[3], head[4], "core%", head[0], head[1], head[2], head[3], head[4], "p50x", "p99x", "cpux"
    );
    let (mut lossless, mut usable, mut udp_lossless) =
        (Largest::default(), Largest::default(), Largest::default());
    let mut cost_at_usable = None;
    for &n in &args.calls {
        let (relayed, forwarded, drops) = bench.relayed(n)?;
        let baseline = bench.baseline(n)?;
        let r_cpu = cpu_per_packet(&relayed, forwarded);
        let u_cpu = cpu_per_packet(&baseline, baseline.received);
        println!(
            "{:>5} {:>6} | relay {:>6.2} {:>6.2} {:>7.2} {:>7.2} {:>6.1} {:>5.0} | udp {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.1} | {:>5.1} {:>5.1} {:>5.1}",
            n,
            n as u64 * 2 * PACKETS_PER_SEC,
            relayed.loss(),
            relayed.late(),
            relayed.percentile(0.5),
            relayed.percentile(0.99),
            r_cpu,
            core_share(&relayed),
            baseline.loss(),
            baseline.late(),
            baseline.percentile(0.5),
            baseline.percentile(0.99),
            u_cpu,
            relayed.percentile(0.5) / baseline.percentile(0.5),
            relayed.percentile(0.99) / baseline.percentile(0.99),
            r_cpu / u_cpu,
        );
        if !drops.is_empty() {
            println!("      relay drops: {}", drops.join(" "));
        }
        lossless.note(n, relayed.loss() < 1.0);
        usable.note(n, relayed.loss() + relayed.late() < 1.0);
        udp_lossless.note(n, baseline.loss() < 1.0);
        if usable.n == Some(n) {
            cost_at_usable = Some(r_cpu).filter(|c| c.is_finite());
        }
        if relayed.loss() + relayed.late() > args.stop_loss {
            break;
        }
    }
    println!(
        "largest N with < 1% loss: relay {} calls (UDP baseline {}); with < 1% lost or late: relay {}",
        lossless.show(),
        udp_lossless.show(),
        usable.show()
    );
    if let Some(cost) = cost_at_usable {
        // 100 forwarded datagrams per second per call (50 each way).
        let per_core = 1e6 / cost / (2 * PACKETS_PER_SEC) as f64;
        println!("relay CPU per forwarded datagram at that load: {cost:.1} us, i.e. about {per_core:.0} calls per fully used core");
    }
    Ok(())
}
