//! The runs of `overlay-sim`: build the overlay, bring the clients online, upset
//! it (a crash, continuous churn, liars), look everyone up, report.

use crate::churn::Churn;
use crate::clients::{Client, ClientAction, RECORD_TTL};
use crate::latency::Network;
use crate::malice::Liar;
use crate::peers::{PeerConfig, PeerStats, Peers};
use crate::phase::Phase;
use crate::sybil::{self, Directory};
use crate::world::{OpKind, Sim};
use parley_proto::overlay::OverlayConfig;
use parley_proto::Identity;
use rand::seq::index::sample;
use rand::Rng;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Supernodes at the start.
    pub supernodes: usize,
    /// Clients.
    pub clients: usize,
    /// Percentage of supernodes that crash at once after the clients published.
    pub crash_pct: f64,
    /// Continuous churn for one republish interval, with lookups during it.
    pub churn: bool,
    /// Percentage of supernodes that are malicious (see `malice`).
    pub malicious_pct: f64,
    /// Percentage of messages lost.
    pub loss_pct: f64,
    /// Seeds everything.
    pub seed: u64,
    /// Overlay settings.
    pub config: OverlayConfig,
    /// Earlier supernodes each new one joins through (see `Sim::bootstraps`).
    pub bootstraps: usize,
    /// Log one line per missed lookup (who held what; see `misses`).
    pub explain_misses: bool,
    /// The /16 networks the malicious supernodes live in (`None`: spread like the
    /// honest ones, an attacker with addresses everywhere).
    pub attacker_networks: Option<u8>,
    /// Percentage of supernodes that are Sybils minted next to target clients' keys
    /// (see `sybil`).
    pub sybil_pct: f64,
    /// Promoted peers among the supernodes (see `peers`): instead of a crash or
    /// `churn`, peers leave (demoted or crashed) and are replaced for one republish
    /// interval, clients churn as under `churn`, and calls choose among the peers'
    /// relays at the end.
    pub peers: Option<PeerConfig>,
    /// Calls sampled between online clients for the relay choice (with `peers`).
    pub relay_calls: usize,
    /// How long the overlay runs idle after publication, measuring its background
    /// RPCs ([`DEFAULT_IDLE`]: 120 s; a whole republish interval, 30 min, or more
    /// includes the clients' 20-min refreshes and the holders' republications).
    pub idle: Duration,
}

/// The idle phase's default length (120 s of virtual time).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(120);

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Lookups that found the current record.
    pub found: u64,
    /// Lookups made.
    pub total: u64,
    /// Median and 99th-percentile hops of the successful lookups.
    pub hops_median: u8,
    /// See `hops_median`.
    pub hops_p99: u8,
    /// Background DHT RPCs per live supernode per minute while idle.
    pub rpcs_per_sn_min_idle: f64,
    /// The same during churn (or during the recovery from the crash).
    pub rpcs_per_sn_min_upset: f64,
    /// Mean replicas a publication reached.
    pub replicas_mean: f64,
    /// All RPCs.
    pub rpcs: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Supernodes replaced under churn.
    pub replaced: u64,
    /// Clients the Sybils were minted next to.
    pub targets: u64,
    /// Lookups of those clients that found the current record.
    pub found_targeted: u64,
    /// Lookups of those clients made.
    pub total_targeted: u64,
    /// What the promoted peers did (with `peers`).
    pub peers: Option<PeerStats>,
    /// Relay choice among the live peers' relays (with `peers`).
    pub relays: Option<crate::relay_choice::RelayReport>,
    /// Live promoted peers (relays) at the end (with `peers`).
    pub live_peers: usize,
}

/// Spacing between supernode joins at the start.
const JOIN_GAP: Duration = Duration::from_millis(10);
/// Clients coming online (and lookups starting) per virtual second.
const RATE_PER_S: f64 = 5_000.0;

fn identities<R: Rng>(rng: &mut R, n: usize) -> Vec<Identity> {
    let seeds: Vec<[u8; 32]> = (0..n).map(|_| rng.gen()).collect();
    seeds.par_iter().map(Identity::from_seed).collect()
}

fn spread(n: usize) -> Duration {
    Duration::from_secs_f64((n as f64 / RATE_PER_S).max(30.0))
}

/// Runs `s`, logging progress through `log`.
pub fn run(s: &Scenario, log: &mut dyn FnMut(String)) -> Report {
    let started = Instant::now();
    let network = Network {
        loss: (s.loss_pct / 100.0).clamp(0.0, 1.0),
    };
    let cache = s.clients.saturating_mul(3).max(1 << 16);
    let mut sim = Sim::new(s.seed, s.config.clone(), network, cache);
    sim.bootstraps = s.bootstraps;
    sim.attacker_networks = s.attacker_networks;
    sim.misses.explain = s.explain_misses;
    sim.peers = s.peers.map(|c| Box::new(Peers::new(c)));
    let stamp = |sim: &Sim| {
        format!(
            "[virtual {:.0} s, wall {:.1} s, cpu {:.1} s, rpcs {}]",
            sim.now.since(crate::world::T0).as_secs_f64(),
            started.elapsed().as_secs_f64(),
            crate::cpu_seconds(),
            sim.stats.rpcs
        )
    };

    // 1. Supernodes join one after another, each through `bootstraps` random earlier
    // ones.
    let ids = identities(&mut sim.rng, s.supernodes);
    let liars: Vec<bool> = {
        let n = ((s.malicious_pct / 100.0) * s.supernodes as f64).round() as usize;
        let mut v = vec![false; s.supernodes];
        for i in sample(&mut sim.rng, s.supernodes, n.min(s.supernodes)) {
            v[i] = true;
        }
        v
    };
    // Sybils need their targets' keys before they join: only then are the clients'
    // identities made first (other runs keep their random sequence).
    let mut client_ids = None;
    let mut sybils = Vec::new();
    if s.sybil_pct > 0.0 {
        let clients = identities(&mut sim.rng, s.clients);
        let started = Instant::now();
        let placed;
        (sybils, placed) = sybil::place(s.sybil_pct, s.config.k, &mut sim, &liars, &ids, &clients);
        log(format!(
            "minted {} Sybils next to {} target clients in {:.1} s; placed closer than every honest supernode: {} (per target {}-{})",
            sybils.iter().flatten().count(),
            sim.targets.len(),
            started.elapsed().as_secs_f64(),
            placed.iter().sum::<usize>(),
            placed.iter().min().unwrap_or(&0),
            placed.iter().max().unwrap_or(&0),
        ));
        client_ids = Some(clients);
    }
    let directory = Arc::new(Directory::new(s.config.k));
    let peer_share = s.peers.map_or(0.0, |p| p.share.clamp(0.0, 1.0));
    for (i, id) in ids.iter().enumerate() {
        let at = sim.now + JOIN_GAP;
        sim.run_until(at);
        let new = match sybils.get(i).copied().flatten() {
            Some(sybil) => {
                let liar = Box::new(Liar::sybil(directory.clone()));
                let n = sim.add_joining_as(sybil, Some(liar));
                directory.add(sim.nodes[n as usize].contact);
                n
            }
            None => sim.add_joining(id, liars[i]),
        };
        // Drawn only with peers on, so runs without them stay as they were.
        if s.peers.is_some() {
            let peer = sim.rng.gen_bool(peer_share);
            sim.set_peer(new, peer);
        }
    }
    drop(ids);
    let at = sim.now + Duration::from_secs(60);
    sim.run_until(at);
    log(format!(
        "joined {} supernodes ({} malicious) {}",
        s.supernodes,
        sim.colluders.len(),
        stamp(&sim)
    ));

    // 2. Clients come online, attach to two honest supernodes and publish. Their
    // first records are signed, and verified once, on every core beforehand.
    sim.phase = Phase::Publish;
    let ids = client_ids.unwrap_or_else(|| identities(&mut sim.rng, s.clients));
    let wave = spread(s.clients);
    let start = sim.now;
    let step = wave.as_secs_f64() / s.clients.max(1) as f64;
    for (c, id) in ids.into_iter().enumerate() {
        let port = sim.rng.gen_range(1024..=u16::MAX);
        sim.clients.push(Client::new(id, port));
        let c32 = c as u32;
        sim.preattach(c32);
        let at = start + Duration::from_secs_f64(step * c as f64);
        sim.schedule(at, c32, ClientAction::Online);
    }
    presign(&mut sim, start, step);
    log(format!("{} clients signed {}", s.clients, stamp(&sim)));
    let at = start + wave + Duration::from_secs(60);
    sim.run_until(at);
    let mut report = Report {
        replicas_mean: sim.stats.replicas as f64 / sim.stats.published.max(1) as f64,
        ..Report::default()
    };
    log(format!(
        "published {} records ({} publications, replicas mean {:.1}, {} refused, \
         stores to honest/malicious supernodes {:?}) {}",
        s.clients,
        sim.stats.published,
        report.replicas_mean,
        sim.stats.publish_refused,
        sim.stats.stores,
        stamp(&sim)
    ));

    if !sim.colluders.is_empty() {
        let (mut size, mut liars, mut honest) = (0, 0, 0);
        for n in sim.nodes.iter().filter(|n| n.malicious.is_none()) {
            if let Some(o) = n.overlay.as_ref() {
                honest += 1;
                let known = o.known_supernodes(10_000);
                size += known.len();
                liars += known
                    .iter()
                    .filter(|c| sim.colluders.contains(&c.id))
                    .count();
            }
        }
        log(format!(
            "honest supernodes know {:.1} live supernodes each, {:.1} of them malicious",
            size as f64 / honest.max(1) as f64,
            liars as f64 / honest.max(1) as f64,
        ));
    }

    // 3. Idle: what does staying up cost?
    sim.phase = Phase::Idle;
    let before = sim.stats.rpcs;
    let at = sim.now + s.idle;
    sim.run_until(at);
    report.rpcs_per_sn_min_idle = (sim.stats.rpcs - before) as f64
        / sim.live.len().max(1) as f64
        / s.idle.as_secs_f64().max(1.0)
        * 60.0;
    log(format!(
        "idle: {:.1} RPCs per supernode per minute {}",
        report.rpcs_per_sn_min_idle,
        stamp(&sim)
    ));

    // 4. Upset the overlay, then look everyone up.
    sim.phase = Phase::Upset;
    let before = (sim.stats.rpcs, sim.now);
    let lookups_from;
    let lookups_span;
    if s.churn || s.peers.is_some() {
        let period = s.config.republish_interval;
        if s.peers.is_some() {
            sim.start_peer_sessions();
        } else {
            let churn = Churn::replacing(0.2, period, s.malicious_pct / 100.0);
            sim.churn = Some(churn);
            let live = sim.live.clone();
            for i in live {
                let at = sim.now + churn.lifetime(&mut sim.rng);
                sim.set_lifetime(i, at);
            }
        }
        // A tenth of the clients leave at some point; they come back after a
        // heavy-tailed time away, with a new NAT port.
        let client_churn = Churn::replacing(0.5, period, 0.0);
        for c in 0..s.clients as u32 {
            if sim.rng.gen_bool(0.1) {
                let off = sim.now + period.mul_f64(sim.rng.gen_range(0.0..1.0));
                sim.schedule(off, c, ClientAction::Offline);
                let back = off + client_churn.lifetime(&mut sim.rng);
                sim.schedule(back, c, ClientAction::Online);
            }
        }
        lookups_from = sim.now + period.mul_f64(2.0 / 3.0);
        lookups_span = period / 3;
        match s.peers {
            Some(p) => log(format!(
                "peers: {} of {} supernodes are promoted peers (median user session {} s, \
                 {:.0}% of departures crashes), 10% of clients leaving",
                sim.live_peers().len(),
                sim.live.len(),
                p.median_session.as_secs(),
                100.0 * p.crash_share
            )),
            None => log(format!(
                "churn: 20% of supernodes replaced per {} s, 10% of clients leaving",
                period.as_secs()
            )),
        }
    } else {
        let n = ((s.crash_pct / 100.0) * sim.live.len() as f64).round() as usize;
        let victims: Vec<u32> = sample(&mut sim.rng, sim.live.len(), n)
            .into_iter()
            .map(|i| sim.live[i])
            .collect();
        for v in victims {
            sim.kill(v);
        }
        if n > 0 {
            log(format!("crashed {n} supernodes {}", stamp(&sim)));
        }
        lookups_from = sim.now + Duration::from_secs(90);
        lookups_span = spread(s.clients);
    }
    let step = lookups_span.as_secs_f64() / s.clients.max(1) as f64;
    for c in 0..s.clients as u32 {
        let at = lookups_from + Duration::from_secs_f64(step * c as f64);
        sim.schedule(at, c, ClientAction::Lookup);
    }
    let mut targets: Vec<u32> = sim.targets.iter().copied().collect();
    targets.sort_unstable();
    for c in targets {
        for _ in 1..sybil::TARGET_LOOKUPS {
            let at = lookups_from + lookups_span.mul_f64(sim.rng.gen_range(0.0..1.0));
            sim.schedule(at, c, ClientAction::Lookup);
        }
    }
    let end = lookups_from + lookups_span + Duration::from_secs(30);
    sim.run_until(lookups_from);
    log(format!("lookups start {}", stamp(&sim)));
    sim.phase = Phase::Lookups;
    sim.run_until(end);
    let minutes = sim.now.since(before.1).as_secs_f64() / 60.0;
    report.rpcs_per_sn_min_upset =
        (sim.stats.rpcs - before.0) as f64 / sim.live.len().max(1) as f64 / minutes.max(1e-9);
    report.found = sim.stats.found;
    // A lookup that never reported counts as a miss.
    report.total = sim.stats.lookups_started.max(sim.stats.lookups);
    let mut hops = std::mem::take(&mut sim.stats.hops);
    hops.sort_unstable();
    let at = |q: f64| {
        hops.get(((hops.len() as f64 * q) as usize).min(hops.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    report.hops_median = at(0.5);
    report.hops_p99 = at(0.99);
    report.rpcs = sim.stats.rpcs;
    report.replaced = sim.stats.replaced;
    report.targets = sim.targets.len() as u64;
    report.found_targeted = sim.stats.targeted[1];
    // Like `total`: a targeted lookup that never reported is a miss.
    let unfinished = sim
        .ops
        .values()
        .filter(|op| matches!(op, OpKind::Lookup { target, .. } if sim.targets.contains(target)))
        .count();
    report.total_targeted = sim.stats.targeted[0] + unfinished as u64;
    report.virtual_s = sim.now.since(crate::world::T0).as_secs_f64();
    log(format!(
        "looked up {} clients: {} found, {:?} not found/old, {} messages lost, {} records refused {}",
        report.total,
        report.found,
        sim.stats.missed,
        sim.stats.lost,
        sim.stats.refused,
        stamp(&sim)
    ));
    if !sim.misses.causes.is_empty() {
        log(format!("misses by cause: {}", sim.misses.summary()));
    }
    log(format!(
        "lookups started {}, finished {}; not started: {} clients offline, {} never \
         confirmed a publication",
        sim.stats.lookups_started,
        sim.stats.lookups,
        sim.stats.lookups_skipped[0],
        sim.stats.lookups_skipped[1]
    ));
    for phase in Phase::ALL {
        let [ping, find_node, find_value, store] = sim.stats.by_phase[phase as usize];
        log(format!(
            "rpcs in {}: ping {ping}, find_node {find_node}, find_value {find_value}, store {store}",
            phase.name()
        ));
    }
    if let Some(p) = sim.peers.as_ref() {
        let st = &p.stats;
        log(format!(
            "peers: {} demoted ({} records handed over, {} stored; {} clients told to \
             move), {} crashed, {} promoted",
            st.demoted,
            st.handed_over,
            st.handed_over_stored,
            st.told_to_move,
            st.crashed,
            st.promoted
        ));
        report.peers = Some(st.clone());
        let relays = crate::relay_choice::in_overlay(&sim, s.relay_calls, s.seed);
        report.live_peers = sim.live_peers().len();
        if let Some(r) = &relays {
            log(format!(
                "relay choice among {} live peers' relays, {} calls: {}",
                report.live_peers,
                s.relay_calls,
                r.summary()
            ));
        }
        report.relays = relays;
    }
    // Freeing millions of small allocations takes a while and measures nothing.
    std::mem::forget(sim);
    report
}

/// Signs every client's first record in parallel (with the attachments chosen by
/// `preattach` and the expiry its publication will give it), and verifies each once
/// into the shared cache, so the event loop spends its time on the overlay.
fn presign(sim: &mut Sim, start: parley_proto::Timestamp, step: f64) {
    let records: Vec<_> = sim
        .clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let at = start + Duration::from_secs_f64(step * c as f64);
            (at, client.record(sim, 1, at + RECORD_TTL))
        })
        .collect();
    let signed: Vec<_> = records
        .into_par_iter()
        .zip(sim.clients.par_iter())
        .map(|((at, record), client)| {
            let signed = record.sign(&client.identity);
            // Warm the shared cache; a failure here shows up at publication.
            let _ = sim.verified.verify(at, signed.clone());
            signed
        })
        .collect();
    for (client, record) in sim.clients.iter_mut().zip(signed) {
        client.presigned = Some(record);
    }
}
