//! Averaging the runs of each grid point and printing them as a markdown table, with the
//! quality targets checked against it.

use std::fmt::Write as _;

/// One network condition of the grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Mean packet loss, percent.
    pub loss_pct: f64,
    /// Gilbert–Elliott bursts instead of independent losses.
    pub bursty: bool,
    /// Extra one-way delay drawn uniformly from `0..jitter_ms` per packet.
    pub jitter_ms: u64,
}

impl Point {
    /// "none", "random" or "bursty".
    pub fn pattern(&self) -> &'static str {
        match (self.loss_pct > 0.0, self.bursty) {
            (false, _) => "none",
            (true, false) => "random",
            (true, true) => "bursty",
        }
    }
}

/// The measurements of one simulated call.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Wideband PESQ MOS-LQO (NaN if PESQ could not score it).
    pub pesq: f64,
    /// Pearson correlation of the aligned output with the reference.
    pub correlation: f64,
    /// Mouth-to-ear delay without the network: capture buffering + codec look-ahead +
    /// jitter buffer, in ms (from the alignment lag).
    pub mouth_to_ear_ms: f64,
    /// The jitter buffer's part of it, in ms.
    pub jitter_buffer_ms: f64,
    /// The same mouth-to-ear delay from per-frame playout times, in ms (cross-check).
    pub frame_mouth_to_ear_ms: f64,
    /// Frames sent.
    pub frames: f64,
    /// Packets the network dropped.
    pub network_lost: f64,
    /// Lost frames rebuilt from FEC.
    pub fec_recovered: f64,
    /// Periods concealed (losses without FEC, and underruns).
    pub concealed: f64,
    /// Frames that arrived too late to play.
    pub late: f64,
    /// Frames the jitter buffer dropped to shrink its delay.
    pub discarded: f64,
    /// Concealed periods that grew the delay (the buffer ran dry and waited).
    pub underruns: f64,
    /// Encoder bitrate averaged over the call, kbit/s.
    pub bitrate_kbps: f64,
    /// Expected loss the encoder's FEC was sized for, averaged over the call, percent.
    pub expected_loss_pct: f64,
}

/// The averages of one grid point (or of the ceiling).
#[derive(Clone, Debug)]
pub struct Summary {
    /// Mean of the runs (PESQ: of those PESQ could score).
    pub mean: Run,
    /// Lowest PESQ of the runs.
    pub pesq_min: f64,
    /// Runs averaged.
    pub runs: usize,
    /// Runs PESQ could not score.
    pub unscored: usize,
}

/// Averages `runs`.
pub fn summarize(runs: &[Run]) -> Summary {
    let n = runs.len().max(1) as f64;
    let avg = |f: fn(&Run) -> f64| runs.iter().map(f).sum::<f64>() / n;
    let scored: Vec<f64> = runs
        .iter()
        .map(|r| r.pesq)
        .filter(|p| p.is_finite())
        .collect();
    let pesq = if scored.is_empty() {
        f64::NAN
    } else {
        scored.iter().sum::<f64>() / scored.len() as f64
    };
    Summary {
        mean: Run {
            pesq,
            correlation: avg(|r| r.correlation),
            mouth_to_ear_ms: avg(|r| r.mouth_to_ear_ms),
            jitter_buffer_ms: avg(|r| r.jitter_buffer_ms),
            frame_mouth_to_ear_ms: avg(|r| r.frame_mouth_to_ear_ms),
            frames: avg(|r| r.frames),
            network_lost: avg(|r| r.network_lost),
            fec_recovered: avg(|r| r.fec_recovered),
            concealed: avg(|r| r.concealed),
            late: avg(|r| r.late),
            discarded: avg(|r| r.discarded),
            underruns: avg(|r| r.underruns),
            bitrate_kbps: avg(|r| r.bitrate_kbps),
            expected_loss_pct: avg(|r| r.expected_loss_pct),
        },
        pesq_min: scored.iter().copied().fold(f64::NAN, f64::min),
        runs: runs.len(),
        unscored: runs.len() - scored.len(),
    }
}

/// The codec-only reference points.
pub struct Ceiling {
    /// Opus alone, expected loss 0 (no FEC bits).
    pub clean: Summary,
    /// Opus alone, expected loss 10 % (what the client asks for on every call).
    pub client_default: Summary,
    /// The codec look-ahead measured on it, in ms.
    pub lookahead_ms: f64,
}

fn pesq(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "n/a".into()
    }
}

/// The results as a markdown table, one row per grid point.
pub fn table(points: &[(Point, Summary)], ceiling: &Ceiling) -> String {
    let mut s = String::new();
    s.push_str(
        "| loss | pattern | jitter ms | PESQ mean | PESQ min | mouth-to-ear ms | jitter buffer ms \
         | lost / call | FEC-recovered / call | concealed / call | late / call |\n\
         |---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (label, c) in [
        ("Opus ceiling", &ceiling.clean),
        ("Opus ceiling, 10 % FEC", &ceiling.client_default),
    ] {
        let _ = writeln!(
            s,
            "| — | {label} | — | {} | {} | {:.1} | — | — | — | — | — |",
            pesq(c.mean.pesq),
            pesq(c.pesq_min),
            ceiling.lookahead_ms
        );
    }
    for (p, r) in points {
        let m = &r.mean;
        let _ = writeln!(
            s,
            "| {} % | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            p.loss_pct,
            p.pattern(),
            p.jitter_ms,
            pesq(m.pesq),
            pesq(r.pesq_min),
            m.mouth_to_ear_ms,
            m.jitter_buffer_ms,
            m.network_lost,
            m.fec_recovered,
            m.concealed,
            m.late,
        );
    }
    s
}

/// Secondary numbers per grid point: the similarity measure, the per-frame delay
/// cross-check, and frames dropped to shrink the delay.
pub fn details(points: &[(Point, Summary)]) -> String {
    let mut s = String::from(
        "| loss | pattern | jitter ms | correlation | mouth-to-ear ms (per frame) | underruns / call | discarded / call | kbit/s | FEC sized for % | runs scored |\n\
         |---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (p, r) in points {
        let _ = writeln!(
            s,
            "| {} % | {} | {} | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{} |",
            p.loss_pct,
            p.pattern(),
            p.jitter_ms,
            r.mean.correlation,
            r.mean.frame_mouth_to_ear_ms,
            r.mean.underruns,
            r.mean.discarded,
            r.mean.bitrate_kbps,
            r.mean.expected_loss_pct,
            r.runs - r.unscored,
            r.runs
        );
    }
    s
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

/// The three quality targets, checked against the table.
pub fn targets(points: &[(Point, Summary)], ceiling: &Ceiling) -> String {
    let find = |loss: f64, bursty: bool, jitter: u64| {
        points.iter().find(|(p, _)| {
            p.loss_pct == loss && (loss == 0.0 || p.bursty == bursty) && p.jitter_ms == jitter
        })
    };
    let mut s = String::new();
    match find(0.0, false, 0) {
        Some((_, r)) => {
            let _ = writeln!(
                s,
                "- clean network PESQ >= 3.8: {} ({} mean, {} min; Opus ceiling {})",
                verdict(r.mean.pesq >= 3.8),
                pesq(r.mean.pesq),
                pesq(r.pesq_min),
                pesq(ceiling.clean.mean.pesq)
            );
        }
        None => s.push_str("- clean network PESQ >= 3.8: not in the grid\n"),
    }
    match find(10.0, false, 30) {
        Some((_, r)) => {
            let _ = writeln!(
                s,
                "- 10 % random loss, 30 ms jitter, PESQ >= 3.0: {} ({} mean, {} min)",
                verdict(r.mean.pesq >= 3.0),
                pesq(r.mean.pesq),
                pesq(r.pesq_min)
            );
        }
        None => s.push_str("- 10 % random loss, 30 ms jitter, PESQ >= 3.0: not in the grid\n"),
    }
    match find(0.0, false, 0) {
        Some((_, r)) => {
            let _ = writeln!(
                s,
                "- mouth-to-ear <= 60 ms at zero jitter, clean network: {} ({:.1} ms)",
                verdict(r.mean.mouth_to_ear_ms <= 60.0),
                r.mean.mouth_to_ear_ms
            );
        }
        None => {
            s.push_str("- mouth-to-ear <= 60 ms at zero jitter, clean network: not in the grid\n")
        }
    }
    let lossy: Vec<&(Point, Summary)> = points
        .iter()
        .filter(|(p, _)| p.jitter_ms == 0 && p.loss_pct > 0.0)
        .collect();
    let over: Vec<String> = lossy
        .iter()
        .filter(|(_, r)| r.mean.mouth_to_ear_ms > 60.0)
        .map(|(p, r)| {
            format!(
                "{} % {} {:.1} ms",
                p.loss_pct,
                p.pattern(),
                r.mean.mouth_to_ear_ms
            )
        })
        .collect();
    if !lossy.is_empty() {
        let _ = writeln!(
            s,
            "- mouth-to-ear <= 60 ms at zero jitter, with loss: {} ({} of {} rows over: {})",
            verdict(over.is_empty()),
            over.len(),
            lossy.len(),
            if over.is_empty() {
                "none".into()
            } else {
                over.join(", ")
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_skips_unscored_runs_and_keeps_the_minimum() {
        let runs = [
            Run {
                pesq: 4.0,
                concealed: 2.0,
                ..Run::default()
            },
            Run {
                pesq: 3.0,
                ..Run::default()
            },
            Run {
                pesq: f64::NAN,
                ..Run::default()
            },
        ];
        let s = summarize(&runs);
        assert_eq!((s.mean.pesq, s.pesq_min, s.unscored), (3.5, 3.0, 1));
        assert!((s.mean.concealed - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn targets_report_met_and_missed() {
        let row = |pesq, m2e| Summary {
            mean: Run {
                pesq,
                mouth_to_ear_ms: m2e,
                ..Run::default()
            },
            pesq_min: pesq,
            runs: 1,
            unscored: 0,
        };
        let point = |loss_pct, jitter_ms| Point {
            loss_pct,
            bursty: false,
            jitter_ms,
        };
        let points = vec![
            (point(0.0, 0), row(3.9, 55.0)),
            (point(10.0, 30), row(2.9, 90.0)),
        ];
        let ceiling = Ceiling {
            clean: row(4.1, 0.0),
            client_default: row(4.0, 0.0),
            lookahead_ms: 6.5,
        };
        let t = targets(&points, &ceiling);
        assert!(t.contains(">= 3.8: MET"), "{t}");
        assert!(t.contains(">= 3.0: MISSED"), "{t}");
        assert!(t.contains("zero jitter, clean network: MET"), "{t}");
        assert!(table(&points, &ceiling).lines().count() == 6);
    }
}
