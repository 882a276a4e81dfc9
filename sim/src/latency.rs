//! A seeded, real-world-shaped latency and loss model.
//!
//! Every endpoint gets a place on a flat world map: one of six regions, weighted
//! like the internet's population of users (two big ones, a few smaller ones), and a
//! spread around the region's centre. The round-trip time between two places is a
//! floor for access links and switching plus a term proportional to the map
//! distance (propagation and routing detours), plus a little jitter per message,
//! clamped to 10–300 ms. Inside one region RTTs are 10–60 ms; between the farthest
//! regions they approach 300 ms, which is how measured RTT distributions between
//! internet hosts look (a large mode below 100 ms, a long tail to a few hundred).

use rand::Rng;

/// Smallest round-trip time, in milliseconds.
pub const MIN_RTT_MS: u32 = 10;
/// Largest round-trip time, in milliseconds.
pub const MAX_RTT_MS: u32 = 300;

/// Region centres on a 1×1 map, with their weights (share of endpoints).
const REGIONS: [((f32, f32), u32); 6] = [
    ((0.20, 0.35), 30), // North America
    ((0.50, 0.30), 28), // Europe
    ((0.80, 0.40), 25), // East Asia
    ((0.70, 0.60), 8),  // South Asia
    ((0.30, 0.75), 5),  // South America
    ((0.90, 0.85), 4),  // Oceania
];

/// One endpoint's place on the map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Place {
    x: f32,
    y: f32,
}

impl Place {
    /// A random place: a weighted region, then a spread around its centre.
    pub fn random<R: Rng>(rng: &mut R) -> Place {
        let total: u32 = REGIONS.iter().map(|(_, w)| w).sum();
        let mut pick = rng.gen_range(0..total);
        let mut centre = REGIONS[0].0;
        for (c, w) in REGIONS {
            if pick < w {
                centre = c;
                break;
            }
            pick -= w;
        }
        Place {
            x: centre.0 + rng.gen_range(-0.06..0.06f32),
            y: centre.1 + rng.gen_range(-0.06..0.06f32),
        }
    }

    /// The round-trip time to `other` in milliseconds, without jitter.
    pub fn rtt_ms(&self, other: &Place) -> u32 {
        let d = ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt();
        let ms = 12.0 + 310.0 * d;
        (ms as u32).clamp(MIN_RTT_MS, MAX_RTT_MS)
    }
}

/// One-way delays and losses for messages between places.
#[derive(Clone, Copy, Debug)]
pub struct Network {
    /// Probability that one message is lost, 0..1.
    pub loss: f64,
}

impl Network {
    /// The one-way delay of one message from `a` to `b` in milliseconds (half the
    /// RTT plus up to 10 % jitter, at least 5), or `None` if it is lost.
    pub fn delay<R: Rng>(&self, rng: &mut R, a: &Place, b: &Place) -> Option<u32> {
        if self.loss > 0.0 && rng.gen_bool(self.loss) {
            return None;
        }
        let rtt = a.rtt_ms(b);
        let jitter = rng.gen_range(0..=rtt / 10);
        Some(((rtt + jitter) / 2).max(MIN_RTT_MS / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn rtts_stay_in_range_and_have_a_low_mode_and_a_long_tail() {
        let mut rng = StdRng::seed_from_u64(7);
        let places: Vec<Place> = (0..400).map(|_| Place::random(&mut rng)).collect();
        let mut rtts: Vec<u32> = Vec::new();
        for a in &places {
            for b in &places {
                rtts.push(a.rtt_ms(b));
            }
        }
        rtts.sort_unstable();
        assert!(rtts.iter().all(|&r| (MIN_RTT_MS..=MAX_RTT_MS).contains(&r)));
        let median = rtts[rtts.len() / 2];
        let p95 = rtts[rtts.len() * 95 / 100];
        assert!((60..=160).contains(&median), "median {median}");
        assert!(p95 >= 200, "p95 {p95}");
    }

    #[test]
    fn loss_drops_about_the_given_share() {
        let mut rng = StdRng::seed_from_u64(8);
        let net = Network { loss: 0.1 };
        let (a, b) = (Place::random(&mut rng), Place::random(&mut rng));
        let lost = (0..10_000)
            .filter(|_| net.delay(&mut rng, &a, &b).is_none())
            .count();
        assert!((800..1200).contains(&lost), "{lost}");
    }
}
