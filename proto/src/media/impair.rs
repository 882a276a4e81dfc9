//! Seeded, reproducible network impairment for tests and benchmarks: random loss,
//! bursty loss (a Gilbert–Elliott two-state channel), delay jitter, reordering and
//! duplication. Same seed and same inputs, same outcome.
//!
//! [`Impairment::send`] takes the time a packet is sent and returns when each copy of it
//! arrives: none if it is lost, two if it is duplicated. Reordering happens naturally
//! when a later packet draws a smaller delay, and is made more likely by `reorder`.

use crate::time::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Bursty loss: the channel alternates between a good state (loss `loss_good`) and a
/// bad one (loss `loss_bad`), moving good→bad with probability `p` and bad→good with
/// probability `r` per packet. Mean loss = `(r·loss_good + p·loss_bad) / (p + r)`;
/// mean burst length in the bad state = `1 / r` packets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of entering the bad state, per packet.
    pub p: f64,
    /// Probability of leaving the bad state, per packet.
    pub r: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// A channel with `mean_loss` (0..1) in bursts of `mean_burst` packets on average,
    /// losing everything in the bad state and nothing in the good one.
    pub fn with_mean(mean_loss: f64, mean_burst: f64) -> GilbertElliott {
        let r = 1.0 / mean_burst.max(1.0);
        let mean = mean_loss.clamp(0.0, 0.99);
        let p = r * mean / (1.0 - mean);
        GilbertElliott {
            p,
            r,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

/// What to do to packets.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ImpairConfig {
    /// Independent random loss probability (0..1), applied on top of `burst`.
    pub loss: f64,
    /// Bursty loss, if any.
    pub burst: Option<GilbertElliott>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..jitter` per packet.
    pub jitter: Duration,
    /// Probability (0..1) that a packet is held back an extra `2 × jitter + 20 ms`, so that
    /// later packets overtake it.
    pub reorder: f64,
    /// Probability (0..1) that a packet arrives twice.
    pub duplicate: f64,
    /// The random seed: same seed, same outcome.
    pub seed: u64,
}

/// A seeded impairment channel.
pub struct Impairment {
    config: ImpairConfig,
    rng: StdRng,
    bad: bool,
}

impl Impairment {
    /// A channel applying `config`.
    pub fn new(config: ImpairConfig) -> Impairment {
        Impairment {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            bad: false,
        }
    }

    fn lost(&mut self) -> bool {
        let mut lost = false;
        if let Some(ge) = self.config.burst {
            let flip = if self.bad { ge.r } else { ge.p };
            if self.rng.gen_bool(flip.clamp(0.0, 1.0)) {
                self.bad = !self.bad;
            }
            let p = if self.bad { ge.loss_bad } else { ge.loss_good };
            lost = self.rng.gen_bool(p.clamp(0.0, 1.0));
        }
        let random = self.rng.gen_bool(self.config.loss.clamp(0.0, 1.0));
        lost || random
    }

    fn delay(&mut self) -> Duration {
        let c = self.config;
        let jitter_ms = c.jitter.as_secs_f64() * 1000.0;
        let mut ms = c.delay.as_secs_f64() * 1000.0;
        if jitter_ms > 0.0 {
            ms += self.rng.gen_range(0.0..jitter_ms);
        }
        if self.rng.gen_bool(c.reorder.clamp(0.0, 1.0)) {
            ms += 2.0 * jitter_ms + 20.0;
        }
        Duration::from_secs_f64(ms / 1000.0)
    }

    /// Whether a bursty channel is in its bad state (mid-burst) after the last packet.
    pub fn in_burst(&self) -> bool {
        self.bad
    }

    /// When the copies of a packet sent at `sent` arrive (empty: lost).
    pub fn send(&mut self, sent: Timestamp) -> Vec<Timestamp> {
        if self.lost() {
            return Vec::new();
        }
        let mut out = vec![sent + self.delay()];
        if self.rng.gen_bool(self.config.duplicate.clamp(0.0, 1.0)) {
            out.push(sent + self.delay());
        }
        out
    }
}

/// Parses `loss=10,burst=3,jitter=30,delay=20,reorder=1,duplicate=1,seed=7` (percentages
/// and milliseconds; `burst=N` makes the loss bursty with mean burst N packets). Used by
/// the client's `PARLEY_IMPAIR` diagnostic and the benchmarks.
pub fn parse_spec(spec: &str) -> Result<ImpairConfig, String> {
    let mut c = ImpairConfig::default();
    let mut loss_pct = 0.0;
    let mut burst = None;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {part:?}"))?;
        let v: f64 = value
            .parse()
            .map_err(|_| format!("{key}: {value:?} is not a number"))?;
        if !(0.0..=100_000.0).contains(&v) {
            return Err(format!("{key}: {v} is out of range"));
        }
        match key {
            "loss" => loss_pct = v.min(100.0),
            "burst" => burst = Some(v),
            "jitter" => c.jitter = Duration::from_secs_f64(v / 1000.0),
            "delay" => c.delay = Duration::from_secs_f64(v / 1000.0),
            "reorder" => c.reorder = v.min(100.0) / 100.0,
            "duplicate" => c.duplicate = v.min(100.0) / 100.0,
            "seed" => c.seed = v as u64,
            other => return Err(format!("unknown impairment {other:?}")),
        }
    }
    match burst {
        Some(b) => c.burst = Some(GilbertElliott::with_mean(loss_pct / 100.0, b)),
        None => c.loss = loss_pct / 100.0,
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: ImpairConfig, n: u64) -> Vec<Vec<Timestamp>> {
        let mut ch = Impairment::new(config);
        (0..n).map(|i| ch.send(Timestamp(i * 20))).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_outcome() {
        let c = parse_spec("loss=10,jitter=30,reorder=2,duplicate=2,seed=9").unwrap();
        assert_eq!(run(c, 1000), run(c, 1000));
        let other = ImpairConfig { seed: 10, ..c };
        assert_ne!(run(c, 1000), run(other, 1000));
    }

    #[test]
    fn random_and_bursty_loss_hit_their_mean() {
        for spec in [
            "loss=10,seed=1",
            "loss=10,burst=4,seed=1",
            "loss=20,burst=2,seed=3",
        ] {
            let c = parse_spec(spec).unwrap();
            let lost = run(c, 50_000).iter().filter(|a| a.is_empty()).count() as f64 / 50_000.0;
            let want = if spec.starts_with("loss=20") {
                0.20
            } else {
                0.10
            };
            assert!((lost - want).abs() < 0.015, "{spec}: lost {lost}");
        }
    }

    #[test]
    fn bursty_loss_comes_in_runs() {
        let c = parse_spec("loss=10,burst=5,seed=2").unwrap();
        let arrivals = run(c, 50_000);
        let (mut runs, mut in_run, mut lost) = (0, false, 0);
        for a in &arrivals {
            if a.is_empty() {
                lost += 1;
                if !in_run {
                    runs += 1;
                }
            }
            in_run = a.is_empty();
        }
        let mean_run = lost as f64 / runs as f64;
        assert!(mean_run > 3.5, "mean burst {mean_run}");
    }

    #[test]
    fn jitter_reorders_and_duplicates() {
        let c = parse_spec("jitter=60,reorder=5,duplicate=5,seed=4").unwrap();
        let arrivals = run(c, 5_000);
        assert!(arrivals.iter().all(|a| !a.is_empty()));
        assert!(arrivals.iter().any(|a| a.len() == 2));
        let firsts: Vec<Timestamp> = arrivals.iter().map(|a| a[0]).collect();
        assert!(
            firsts.windows(2).any(|w| w[1] < w[0]),
            "nothing was reordered"
        );
        let max_delay = arrivals
            .iter()
            .enumerate()
            .map(|(i, a)| a[0].since(Timestamp(i as u64 * 20)))
            .max()
            .unwrap();
        assert!(max_delay <= Duration::from_millis(60 * 3 + 20));
    }

    #[test]
    fn bad_specs_are_errors() {
        for bad in ["loss", "loss=x", "foo=1", "loss=-1"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
