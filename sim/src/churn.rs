//! Continuous churn: supernode and client sessions with heavy-tailed lifetimes.
//!
//! Session lengths follow a Lomax (Pareto type II) distribution, as measured for
//! peer-to-peer sessions: most are short, a few last very long. Its scale is set so
//! that a given share of supernodes leaves within one period. Every supernode that
//! leaves is replaced at once by a fresh one with its own lifetime, so the overlay
//! keeps its size while its membership turns over. A promoted peer is the same
//! thing: a supernode with a session lifetime.

use crate::world::Sim;
use parley_proto::Identity;
use rand::Rng;
use std::time::Duration;

/// Shape of the session-length distribution (heavier tail when smaller).
pub const SHAPE: f64 = 1.5;

/// Churn settings.
#[derive(Clone, Copy, Debug)]
pub struct Churn {
    /// Lomax scale in milliseconds.
    pub scale_ms: f64,
    /// Share of replacement supernodes that are malicious.
    pub malicious: f64,
}

impl Churn {
    /// Churn in which `share` (0..1) of the supernodes alive at the start have left
    /// after `period`.
    pub fn replacing(share: f64, period: Duration, malicious: f64) -> Churn {
        // P(X > t) = (1 + t/scale)^-SHAPE; solve P(X > period) = 1 - share.
        let survive = (1.0 - share).clamp(1e-9, 1.0 - 1e-9);
        let scale_ms = period.as_millis() as f64 / (survive.powf(-1.0 / SHAPE) - 1.0);
        Churn {
            scale_ms,
            malicious,
        }
    }

    /// One session length.
    pub fn lifetime<R: Rng>(&self, rng: &mut R) -> Duration {
        let u: f64 = rng.gen_range(0.0..1.0);
        let ms = self.scale_ms * ((1.0 - u).powf(-1.0 / SHAPE) - 1.0);
        Duration::from_millis(ms.min(1e12) as u64)
    }
}

impl Sim {
    /// Supernode `i` has left; under churn a fresh one takes its place.
    pub(crate) fn on_supernode_left(&mut self, _i: u32) {
        let Some(churn) = self.churn else {
            return;
        };
        let identity = Identity::from_seed(&self.rng.gen());
        let malicious = self.rng.gen_bool(churn.malicious.clamp(0.0, 1.0));
        let new = self.add_joining(&identity, malicious);
        let life = churn.lifetime(&mut self.rng);
        let at = self.now + life;
        self.set_lifetime(new, at);
        self.stats.replaced += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_given_share_leaves_within_the_period() {
        let period = Duration::from_secs(1800);
        let churn = Churn::replacing(0.2, period, 0.0);
        let mut rng = StdRng::seed_from_u64(3);
        let n = 20_000;
        let gone = (0..n).filter(|_| churn.lifetime(&mut rng) < period).count();
        let share = gone as f64 / n as f64;
        assert!((0.18..0.22).contains(&share), "{share}");
    }
}
