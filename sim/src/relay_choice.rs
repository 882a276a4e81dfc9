//! How far the chosen relay's path RTT is from the best possible one (issue 10):
//! many small relays placed like users ("enter deep"), clients and relays that learn
//! Vivaldi coordinates from RTT samples to a few neighbours, and calls between random
//! clients that pick a relay by [`parley_proto::relay::choice`] — against a random
//! relay and the least-loaded one (what a supernode hands out today).
//!
//! RTTs come from the same latency model as `overlay-sim` (`latency`): a plane with
//! access-link delays, so Vivaldi's plane-plus-height space fits it better than it fits
//! the internet, whose triangle-inequality violations it does not model. That is why
//! the choice does not trust the estimates alone: the short list is pinged.

use crate::latency::Place;
use parley_proto::relay::choice::{choose, shortlist, RelayCandidate, FULL_LOAD, SHORTLIST};
use parley_proto::vivaldi::Coordinate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A relay-choice run.
#[derive(Clone, Debug)]
pub struct RelayScenario {
    /// Relays, placed like users.
    pub relays: usize,
    /// Clients.
    pub clients: usize,
    /// Calls between random pairs of clients.
    pub calls: usize,
    /// Other relays each relay measures for its coordinate.
    pub neighbours: usize,
    /// RTT samples each relay takes (one neighbour each), all relays together first:
    /// the long-lived infrastructure's coordinates.
    pub samples: usize,
    /// Relays (standing in for its supernodes and earlier calls' relays) each client
    /// measures, after the relays have settled.
    pub client_neighbours: usize,
    /// RTT samples each client takes.
    pub client_samples: usize,
    /// Seeds everything.
    pub seed: u64,
}

/// One policy's figures.
#[derive(Clone, Debug, Default)]
pub struct PolicyReport {
    /// Its name.
    pub name: &'static str,
    /// Calls whose relay path RTT was within 1.5× of the best usable relay's, in %.
    pub within_1_5x_pct: f64,
    /// Median and 90th percentile of chosen / best path RTT.
    pub stretch_median: f64,
    /// See `stretch_median`.
    pub stretch_p90: f64,
    /// Mean milliseconds added over the best path.
    pub extra_ms_mean: f64,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct RelayReport {
    /// Median relative error of the coordinates' RTT estimates, client to relay.
    pub estimate_error_median: f64,
    /// Random, least-loaded, coordinates only, coordinates + pings of the short list.
    pub policies: Vec<PolicyReport>,
}

/// A measured RTT: the model's plus up to 10 % jitter (as `latency::Network`).
fn sample(rng: &mut StdRng, a: &Place, b: &Place) -> f64 {
    let rtt = f64::from(a.rtt_ms(b));
    rtt * (1.0 + rng.gen_range(0.0..0.1))
}

/// How relays and clients learn their coordinates (see [`RelayScenario`]).
#[derive(Clone, Copy, Debug)]
pub struct Training {
    /// Other relays each relay measures.
    pub neighbours: usize,
    /// RTT samples each relay takes.
    pub samples: usize,
    /// Relays each client measures.
    pub client_neighbours: usize,
    /// RTT samples each client takes.
    pub client_samples: usize,
}

/// `relay-choice`'s defaults (docs/performance.md, "Relay choice by RTT").
pub const TRAINING: Training = Training {
    neighbours: 16,
    samples: 400,
    client_neighbours: 4,
    client_samples: 40,
};

/// Runs `s`.
pub fn run(s: &RelayScenario) -> RelayReport {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let relays = s.relays.max(1);
    let n = relays + s.clients.max(2);
    let places: Vec<Place> = (0..n).map(|_| Place::random(&mut rng)).collect();
    let clients = n - relays;
    let training = Training {
        neighbours: s.neighbours,
        samples: s.samples,
        client_neighbours: s.client_neighbours,
        client_samples: s.client_samples,
    };
    let pick = |rng: &mut StdRng| {
        let a = rng.gen_range(0..clients);
        let b = loop {
            let b = rng.gen_range(0..clients);
            if b != a {
                break b;
            }
        };
        (a, b)
    };
    measure(&mut rng, &places, relays, &training, s.calls, pick)
}

/// The relay choice among relays at `places[..relays]` for `calls` calls between
/// clients at `places[relays..]`, each pair of clients (indices from 0 among the
/// clients) drawn by `pick`. Loads are uniform 0–1.
pub fn measure(
    rng: &mut StdRng,
    places: &[Place],
    relays: usize,
    t: &Training,
    calls: usize,
    mut pick: impl FnMut(&mut StdRng) -> (usize, usize),
) -> RelayReport {
    let n = places.len();
    let relays = relays.clamp(1, n);
    // Nodes 0..relays are relays; the rest clients.
    let loads: Vec<f64> = (0..relays).map(|_| rng.gen_range(0.0..1.0)).collect();
    // Each node's neighbours are relays (not itself, when there is another).
    let neighbours: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let count = if i < relays {
                t.neighbours
            } else {
                t.client_neighbours
            };
            (0..count.max(1))
                .map(|_| loop {
                    let j = rng.gen_range(0..relays);
                    if j != i || relays == 1 {
                        break j;
                    }
                })
                .collect()
        })
        .collect();
    let mut coords = vec![Coordinate::origin(); n];
    let mut train = |nodes: std::ops::Range<usize>, samples: usize, coords: &mut [Coordinate]| {
        for _ in 0..samples {
            for i in nodes.clone() {
                let j = neighbours[i][rng.gen_range(0..neighbours[i].len())];
                let rtt = sample(rng, &places[i], &places[j]);
                let remote = coords[j];
                coords[i].update(&remote, rtt, rng);
            }
        }
    };
    train(0..relays, t.samples, &mut coords);
    train(relays..n, t.client_samples, &mut coords);
    let mut errors: Vec<f64> = (0..2_000)
        .map(|_| {
            let (r, c) = (rng.gen_range(0..relays), rng.gen_range(relays..n));
            let real = f64::from(places[r].rtt_ms(&places[c]));
            (coords[r].estimate_ms(&coords[c]) - real).abs() / real
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let candidates: Vec<RelayCandidate<usize>> = (0..relays)
        .map(|r| RelayCandidate {
            id: r,
            coord: coords[r],
            load: loads[r],
        })
        .collect();
    let usable: Vec<usize> = (0..relays).filter(|&r| loads[r] < FULL_LOAD).collect();
    let path = |a: usize, r: usize, b: usize| {
        f64::from(places[a].rtt_ms(&places[r])) + f64::from(places[r].rtt_ms(&places[b]))
    };
    let least_loaded = usable
        .iter()
        .copied()
        .min_by(|x, y| loads[*x].total_cmp(&loads[*y]));
    let mut stretches: [Vec<(f64, f64)>; 4] = Default::default();
    for _ in 0..calls {
        let (a, b) = pick(rng);
        let (a, b) = (relays + a, relays + b);
        let Some(best) = usable.iter().map(|&r| path(a, r, b)).min_by(f64::total_cmp) else {
            continue;
        };
        let random = usable[rng.gen_range(0..usable.len())];
        let short = shortlist(&candidates, &coords[a], &coords[b], SHORTLIST);
        let measured: Vec<_> = short
            .iter()
            .map(|c| {
                let to_a = sample(rng, &places[a], &places[c.id]);
                let to_b = sample(rng, &places[b], &places[c.id]);
                (*c, to_a, to_b)
            })
            .collect();
        let picks = [
            Some(random),
            least_loaded,
            short.first().map(|c| c.id),
            choose(&measured),
        ];
        for (policy, pick) in picks.iter().enumerate() {
            if let Some(r) = pick {
                let chosen = path(a, *r, b);
                stretches[policy].push((chosen / best, chosen - best));
            }
        }
    }
    let names = [
        "random",
        "least loaded",
        "coordinates only",
        "coordinates + pings",
    ];
    RelayReport {
        estimate_error_median: errors.get(errors.len() / 2).copied().unwrap_or(0.0),
        policies: names
            .iter()
            .zip(stretches)
            .map(|(name, mut v)| summarise(name, &mut v))
            .collect(),
    }
}

impl RelayReport {
    /// The chosen policy's figures (coordinates + pings), the last one.
    pub fn chosen(&self) -> PolicyReport {
        self.policies.last().cloned().unwrap_or_default()
    }

    /// One line: each policy's share within 1.5× and median stretch.
    pub fn summary(&self) -> String {
        let mut line = format!("estimate error median {:.3}", self.estimate_error_median);
        for p in &self.policies {
            line += &format!(
                "; {}: {:.2} % within 1.5x, stretch median {:.3} p90 {:.3}",
                p.name, p.within_1_5x_pct, p.stretch_median, p.stretch_p90
            );
        }
        line
    }
}

/// The relay choice at the end of an `overlay-sim` run with promoted peers: every
/// live peer runs a relay (as `parley online` does when promoted), at the peer's own
/// place on the latency map; `calls` calls between random pairs of online clients
/// (each at its own place on the same population-weighted map, [`client_place`]: the
/// simulator's clients send no messages of their own, so only calls need one) choose among them by
/// [`measure`] with `relay-choice`'s [`TRAINING`]. `None` without peers, or with
/// fewer than two online clients.
pub fn in_overlay(sim: &crate::world::Sim, calls: usize, seed: u64) -> Option<RelayReport> {
    let relays: Vec<Place> = sim
        .live_peers()
        .iter()
        .map(|&i| sim.nodes[i as usize].place)
        .collect();
    if relays.is_empty() || calls == 0 {
        return None;
    }
    let online: Vec<u32> = (0..sim.clients.len() as u32)
        .filter(|&c| sim.clients[c as usize].online)
        .collect();
    if online.len() < 2 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7e1a_5c01);
    // Two distinct online clients per call, each with a place.
    let mut places = relays.clone();
    for _ in 0..calls {
        let a = rng.gen_range(0..online.len());
        let b = loop {
            let b = rng.gen_range(0..online.len());
            if b != a {
                break b;
            }
        };
        places.push(client_place(seed, online[a]));
        places.push(client_place(seed, online[b]));
    }
    let mut next = 0;
    let pick = move |_: &mut StdRng| {
        next += 2;
        (next - 2, next - 1)
    };
    Some(measure(
        &mut rng,
        &places,
        relays.len(),
        &TRAINING,
        calls,
        pick,
    ))
}

/// Client `c`'s place on the latency map in the run seeded `seed` (the same in every
/// call it makes).
pub fn client_place(seed: u64, c: u32) -> Place {
    let key = seed ^ u64::from(c).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Place::random(&mut StdRng::seed_from_u64(key))
}

fn summarise(name: &'static str, v: &mut [(f64, f64)]) -> PolicyReport {
    if v.is_empty() {
        return PolicyReport {
            name,
            ..Default::default()
        };
    }
    v.sort_by(|x, y| x.0.total_cmp(&y.0));
    let count = v.len() as f64;
    PolicyReport {
        name,
        within_1_5x_pct: 100.0 * v.iter().filter(|x| x.0 <= 1.5).count() as f64 / count,
        stretch_median: v[v.len() / 2].0,
        stretch_p90: v[(v.len() * 9 / 10).min(v.len() - 1)].0,
        extra_ms_mean: v.iter().map(|x| x.1).sum::<f64>() / count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_and_pings_pick_a_relay_close_to_the_best() {
        let r = run(&RelayScenario {
            relays: 200,
            clients: 1_000,
            calls: 1_000,
            neighbours: 16,
            samples: 300,
            client_neighbours: 4,
            client_samples: 40,
            seed: 5,
        });
        let by = |name: &str| r.policies.iter().find(|p| p.name == name).unwrap().clone();
        let chosen = by("coordinates + pings");
        assert!(chosen.within_1_5x_pct >= 90.0, "{r:?}");
        assert!(
            chosen.within_1_5x_pct > by("random").within_1_5x_pct + 20.0,
            "{r:?}"
        );
        assert!(chosen.stretch_median <= by("coordinates only").stretch_median + 1e-9);
        assert!(r.estimate_error_median < 0.25, "{r:?}");
    }
}
