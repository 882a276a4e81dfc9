//! Vivaldi network coordinates: each node places itself in a small latency space from
//! the round-trip times it measures, so that any two nodes can estimate the RTT between
//! them from their coordinates alone (Dabek, Cox, Kaashoek & Morris, "Vivaldi: a
//! decentralized network coordinate system", SIGCOMM 2004).
//!
//! Two dimensions plus a height (§5.3 of the paper): the height models the access link
//! every packet crosses at both ends, so `estimate = |p_a − p_b| + h_a + h_b` in
//! milliseconds. Updates follow the paper's adaptive timestep (Fig. 3, `c_c = c_e =
//! 0.25`): a node moves towards or away from the other by a step weighted by how sure it
//! is relative to the other (the two error estimates).
//!
//! Why our own code and not the `vivaldi-nc` crate: that crate draws its starting
//! position and its tie-breaking directions from `thread_rng` inside `new()` and
//! `update()`, so the simulator's seeded runs would not repeat; here the caller passes
//! the randomness, as every sans-IO machine in `proto` does. And a coordinate comes
//! from a stranger: [`Coordinate::checked`] refuses non-finite or absurd values before
//! they can move ours (a relay that lies about its coordinate only gets short-listed;
//! the parties' pings decide, see `relay::choice`).

use rand::Rng;

/// Step constant `c_c` of the adaptive timestep.
const C_DELTA: f64 = 0.25;
/// Error-smoothing constant `c_e`.
const C_ERROR: f64 = 0.25;
/// A new node's error estimate (relative error, 1.0 = knows nothing).
const INITIAL_ERROR: f64 = 1.0;
/// Error estimates stay within these bounds (relative error).
const ERROR_RANGE: (f64, f64) = (0.01, 2.0);
/// Heights are at least this (ms): every path crosses two access links.
const MIN_HEIGHT_MS: f64 = 0.1;
/// Largest coordinate component or height accepted from a peer, in ms.
pub const MAX_COMPONENT_MS: f64 = 60_000.0;
/// RTT samples outside this range (ms) are ignored.
const RTT_RANGE_MS: (f64, f64) = (0.05, 60_000.0);

/// A position in latency space: two dimensions and a height, all in milliseconds, with
/// the node's confidence in it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coordinate {
    /// Position on the plane (ms).
    pub pos: [f64; 2],
    /// Height above the plane (ms): the access-link delay.
    pub height: f64,
    /// Relative error estimate, 0.01–2.0 (lower is surer).
    pub error: f64,
}

impl Coordinate {
    /// A new node: at the origin, knowing nothing (its first sample moves it).
    pub fn origin() -> Coordinate {
        Coordinate {
            pos: [0.0, 0.0],
            height: MIN_HEIGHT_MS,
            error: INITIAL_ERROR,
        }
    }

    /// `self` if every field is finite and in range, for coordinates received from
    /// others; `None` otherwise.
    pub fn checked(self) -> Option<Coordinate> {
        let in_range = |v: f64| v.is_finite() && v.abs() <= MAX_COMPONENT_MS;
        let ok = self.pos.iter().all(|&v| in_range(v))
            && in_range(self.height)
            && self.height >= 0.0
            && self.error.is_finite()
            && self.error > 0.0;
        ok.then_some(Coordinate {
            error: self.error.clamp(ERROR_RANGE.0, ERROR_RANGE.1),
            ..self
        })
    }

    /// The RTT the two coordinates predict, in milliseconds.
    pub fn estimate_ms(&self, other: &Coordinate) -> f64 {
        plane_distance(self, other) + self.height + other.height
    }

    /// Moves `self` after measuring `rtt_ms` to a node at `remote` (Fig. 3 of the
    /// paper). `rng` picks a direction when the two sit on the same point. Samples
    /// and remotes out of range are ignored.
    pub fn update<R: Rng>(&mut self, remote: &Coordinate, rtt_ms: f64, rng: &mut R) {
        let Some(remote) = remote.checked() else {
            return;
        };
        if !(RTT_RANGE_MS.0..=RTT_RANGE_MS.1).contains(&rtt_ms) {
            return;
        }
        let estimate = self.estimate_ms(&remote);
        let weight = self.error / (self.error + remote.error);
        let sample_error = (estimate - rtt_ms).abs() / rtt_ms;
        self.error = (sample_error * C_ERROR * weight + self.error * (1.0 - C_ERROR * weight))
            .clamp(ERROR_RANGE.0, ERROR_RANGE.1);
        let force = C_DELTA * weight * (rtt_ms - estimate);
        let plane = plane_distance(self, &remote);
        let (dir, norm) = if plane > 1e-6 {
            let d = [self.pos[0] - remote.pos[0], self.pos[1] - remote.pos[1]];
            (d, estimate)
        } else {
            let angle: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
            (
                [angle.cos(), angle.sin()],
                1.0 + self.height + remote.height,
            )
        };
        // The unit vector of the height-vector difference [p_a − p_b, h_a + h_b].
        self.pos[0] += force * dir[0] / norm;
        self.pos[1] += force * dir[1] / norm;
        self.height = (self.height + force * (self.height + remote.height) / norm)
            .clamp(MIN_HEIGHT_MS, MAX_COMPONENT_MS);
        for v in &mut self.pos {
            *v = v.clamp(-MAX_COMPONENT_MS, MAX_COMPONENT_MS);
        }
    }
}

fn plane_distance(a: &Coordinate, b: &Coordinate) -> f64 {
    ((a.pos[0] - b.pos[0]).powi(2) + (a.pos[1] - b.pos[1]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Nodes on a plane with 5 ms access links: true RTT = distance + 10.
    fn truth(places: &[[f64; 2]], a: usize, b: usize) -> f64 {
        let (p, q) = (places[a], places[b]);
        ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt() + 10.0
    }

    #[test]
    fn nodes_that_measure_their_neighbours_predict_everyone_else() {
        let mut rng = StdRng::seed_from_u64(3);
        let places: Vec<[f64; 2]> = (0..60)
            .map(|_| [rng.gen_range(0.0..200.0), rng.gen_range(0.0..200.0)])
            .collect();
        let mut coords = vec![Coordinate::origin(); places.len()];
        for _ in 0..400 {
            for a in 0..places.len() {
                // Each node measures 8 fixed neighbours only.
                let b = (a + 1 + rng.gen_range(0..8) * 7) % places.len();
                let remote = coords[b];
                coords[a].update(&remote, truth(&places, a, b), &mut rng);
            }
        }
        let mut errors: Vec<f64> = Vec::new();
        for a in 0..places.len() {
            for b in a + 1..places.len() {
                let real = truth(&places, a, b);
                errors.push((coords[a].estimate_ms(&coords[b]) - real).abs() / real);
            }
        }
        errors.sort_by(f64::total_cmp);
        let median = errors[errors.len() / 2];
        assert!(median < 0.1, "median relative error {median}");
        assert!(coords.iter().all(|c| c.error < 0.5));
    }

    #[test]
    fn absurd_coordinates_and_samples_from_others_are_ignored() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut me = Coordinate::origin();
        let sure = Coordinate {
            pos: [50.0, 0.0],
            height: 5.0,
            error: 0.1,
        };
        me.update(&sure, 60.0, &mut rng);
        let before = me;
        for bad in [
            Coordinate {
                pos: [f64::NAN, 0.0],
                ..sure
            },
            Coordinate {
                pos: [1e12, 0.0],
                ..sure
            },
            Coordinate {
                height: -1.0,
                ..sure
            },
            Coordinate {
                error: f64::INFINITY,
                ..sure
            },
            Coordinate { error: 0.0, ..sure },
        ] {
            assert!(bad.checked().is_none(), "{bad:?}");
            me.update(&bad, 60.0, &mut rng);
        }
        for rtt in [0.0, -5.0, f64::NAN, 1e9] {
            me.update(&sure, rtt, &mut rng);
        }
        assert_eq!(me, before);
    }

    #[test]
    fn the_same_seed_gives_the_same_coordinates() {
        let run = || {
            let mut rng = StdRng::seed_from_u64(9);
            let mut a = Coordinate::origin();
            let mut b = Coordinate::origin();
            for _ in 0..20 {
                let (ra, rb) = (a, b);
                a.update(&rb, 40.0, &mut rng);
                b.update(&ra, 40.0, &mut rng);
            }
            (a, b)
        };
        assert_eq!(run(), run());
    }
}
