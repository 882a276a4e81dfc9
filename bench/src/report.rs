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
    /// Whether the encoder may add DRED.
    pub dred: bool,
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
    /// Lost frames rebuilt from a later packet (in-band FEC or DRED).
    pub recovered: f64,
    /// Periods concealed (losses with nothing later to rebuild from, and underruns).
    pub concealed: f64,
    /// Lost frames played from an exact copy in a later datagram.
    pub by_copy: f64,
    /// Lost frames the codec rebuilt from in-band FEC.
    pub by_fec: f64,
    /// Lost frames the codec rebuilt from DRED.
    pub by_dred: f64,
    /// Periods the codec concealed.
    pub codec_concealed: f64,
    /// Copies of earlier frames per datagram, averaged over the call.
    pub redundant_frames: f64,
    /// Frames that arrived too late to play.
    pub late: f64,
    /// Frames the jitter buffer dropped to shrink its delay.
    pub discarded: f64,
    /// Audio bits actually sent (FEC and DRED included), kbit/s.
    pub bitrate_kbps: f64,
    /// Expected loss the encoder's FEC was sized for, averaged over the call, percent.
    pub expected_loss_pct: f64,
    /// DRED depth asked of the encoder, averaged over the call, ms.
    pub dred_ms: f64,
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
            recovered: avg(|r| r.recovered),
            concealed: avg(|r| r.concealed),
            by_copy: avg(|r| r.by_copy),
            by_fec: avg(|r| r.by_fec),
            by_dred: avg(|r| r.by_dred),
            codec_concealed: avg(|r| r.codec_concealed),
            redundant_frames: avg(|r| r.redundant_frames),
            late: avg(|r| r.late),
            discarded: avg(|r| r.discarded),
            bitrate_kbps: avg(|r| r.bitrate_kbps),
            expected_loss_pct: avg(|r| r.expected_loss_pct),
            dred_ms: avg(|r| r.dred_ms),
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
    /// Opus alone, expected loss 10 % (what the client used to ask for on every call).
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

/// The network condition of a point, without the DRED switch.
fn same_condition(a: &Point, b: &Point) -> bool {
    a.loss_pct == b.loss_pct && a.bursty == b.bursty && a.jitter_ms == b.jitter_ms
}

/// Rows: each network condition once, with its DRED and no-DRED summaries.
fn pairs(points: &[(Point, Summary)]) -> Vec<(Point, Option<&Summary>, Option<&Summary>)> {
    let mut rows: Vec<(Point, Option<&Summary>, Option<&Summary>)> = Vec::new();
    for (p, r) in points {
        let i = match rows.iter().position(|(q, _, _)| same_condition(p, q)) {
            Some(i) => i,
            None => {
                rows.push((*p, None, None));
                rows.len() - 1
            }
        };
        if p.dred {
            rows[i].1 = Some(r);
        } else {
            rows[i].2 = Some(r);
        }
    }
    rows
}

/// "copy / FEC / DRED / concealed" per call.
fn recovery(r: &Summary) -> String {
    let m = &r.mean;
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1}",
        m.by_copy, m.by_fec, m.by_dred, m.codec_concealed
    )
}

fn cell(r: Option<&Summary>, f: impl Fn(&Summary) -> String) -> String {
    r.map_or_else(|| "—".into(), f)
}

/// The results as a markdown table, one row per network condition, with and without
/// DRED side by side.
pub fn table(points: &[(Point, Summary)], ceiling: &Ceiling) -> String {
    let mut s = String::new();
    s.push_str(
        "| loss | pattern | jitter ms | PESQ (DRED) | PESQ min (DRED) | PESQ (no DRED) \
         | mouth-to-ear ms (DRED) | mouth-to-ear ms (no DRED) | kbit/s (DRED) | kbit/s (no DRED) \
         | DRED ms | copies | lost / call | copy / FEC / DRED / concealed per call (DRED) | late / call |\n\
         |---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (label, c) in [
        ("Opus ceiling", &ceiling.clean),
        ("Opus ceiling, 10 % FEC", &ceiling.client_default),
    ] {
        let _ = writeln!(
            s,
            "| — | {label} | — | {} | {} | — | {:.1} | — | — | — | — | — | — | — | — |",
            pesq(c.mean.pesq),
            pesq(c.pesq_min),
            ceiling.lookahead_ms
        );
    }
    for (p, with, without) in pairs(points) {
        let any = with.or(without);
        let _ = writeln!(
            s,
            "| {} % | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.loss_pct,
            p.pattern(),
            p.jitter_ms,
            cell(with, |r| pesq(r.mean.pesq)),
            cell(with, |r| pesq(r.pesq_min)),
            cell(without, |r| pesq(r.mean.pesq)),
            cell(with, |r| format!("{:.1}", r.mean.mouth_to_ear_ms)),
            cell(without, |r| format!("{:.1}", r.mean.mouth_to_ear_ms)),
            cell(with, |r| format!("{:.1}", r.mean.bitrate_kbps)),
            cell(without, |r| format!("{:.1}", r.mean.bitrate_kbps)),
            cell(with, |r| format!("{:.0}", r.mean.dred_ms)),
            cell(any, |r| format!("{:.2}", r.mean.redundant_frames)),
            cell(any, |r| format!("{:.1}", r.mean.network_lost)),
            cell(with.or(without), recovery),
            cell(any, |r| format!("{:.1}", r.mean.late)),
        );
    }
    s
}

/// Secondary numbers per grid point: the similarity measure, the per-frame delay
/// cross-check, and frames dropped to shrink the delay.
pub fn details(points: &[(Point, Summary)]) -> String {
    let mut s = String::from(
        "| loss | pattern | jitter ms | DRED | correlation | jitter buffer ms | mouth-to-ear ms (per frame) | recovered / call | copy / FEC / DRED / concealed per call | discarded / call | FEC sized for % | runs scored |\n\
         |---:|:---|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (p, r) in points {
        let _ = writeln!(
            s,
            "| {} % | {} | {} | {} | {:.3} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {}/{} |",
            p.loss_pct,
            p.pattern(),
            p.jitter_ms,
            if p.dred { "on" } else { "off" },
            r.mean.correlation,
            r.mean.jitter_buffer_ms,
            r.mean.frame_mouth_to_ear_ms,
            r.mean.recovered,
            recovery(r),
            r.mean.discarded,
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

/// The quality targets of issue 13, checked against the DRED rows (what a call does).
pub fn targets(points: &[(Point, Summary)], ceiling: &Ceiling) -> String {
    let find = |loss: f64, bursty: bool, jitter: u64| {
        points.iter().find(|(p, _)| {
            p.dred
                && p.loss_pct == loss
                && (loss == 0.0 || p.bursty == bursty)
                && p.jitter_ms == jitter
        })
    };
    let mut s = String::new();
    let pesq_targets: [(&str, f64, bool, u64, f64); 5] = [
        ("clean network", 0.0, false, 0, 4.0),
        ("10 % random loss, 30 ms jitter", 10.0, false, 30, 3.3),
        (
            "10 % bursty loss (mean burst 3), no jitter",
            10.0,
            true,
            0,
            2.8,
        ),
        ("20 % random loss, no jitter", 20.0, false, 0, 2.8),
        ("20 % bursty loss, no jitter", 20.0, true, 0, 2.3),
    ];
    for (label, loss, bursty, jitter, target) in pesq_targets {
        match find(loss, bursty, jitter) {
            Some((_, r)) => {
                let by = if r.mean.pesq >= target {
                    String::new()
                } else {
                    format!(", short by {:.2}", target - r.mean.pesq)
                };
                let _ = writeln!(
                    s,
                    "- {label}: PESQ >= {target}: {} ({} mean, {} min{by})",
                    verdict(r.mean.pesq >= target),
                    pesq(r.mean.pesq),
                    pesq(r.pesq_min),
                );
            }
            None => {
                let _ = writeln!(s, "- {label}: PESQ >= {target}: not in the grid");
            }
        }
    }
    let _ = writeln!(
        s,
        "- (Opus alone at this bitrate: {})",
        pesq(ceiling.clean.mean.pesq)
    );
    for (label, loss, jitter, target) in [
        ("clean network", 0.0, 0, 60.0),
        ("10 % random loss, 30 ms jitter", 10.0, 30, 100.0),
    ] {
        match find(loss, false, jitter) {
            Some((_, r)) => {
                let _ = writeln!(
                    s,
                    "- {label}: mouth-to-ear <= {target} ms: {} ({:.1} ms)",
                    verdict(r.mean.mouth_to_ear_ms <= target),
                    r.mean.mouth_to_ear_ms
                );
            }
            None => {
                let _ = writeln!(s, "- {label}: mouth-to-ear <= {target} ms: not in the grid");
            }
        }
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
    fn targets_report_met_and_missed_and_rows_pair_up() {
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
        let point = |loss_pct, jitter_ms, dred| Point {
            loss_pct,
            bursty: false,
            jitter_ms,
            dred,
        };
        let points = vec![
            (point(0.0, 0, true), row(4.05, 55.0)),
            (point(0.0, 0, false), row(4.05, 55.0)),
            (point(10.0, 30, true), row(3.1, 90.0)),
            (point(10.0, 30, false), row(2.9, 90.0)),
        ];
        let ceiling = Ceiling {
            clean: row(4.1, 0.0),
            client_default: row(4.0, 0.0),
            lookahead_ms: 6.5,
        };
        let t = targets(&points, &ceiling);
        assert!(t.contains("clean network: PESQ >= 4: MET"), "{t}");
        assert!(
            t.contains("PESQ >= 3.3: MISSED (3.10 mean, 3.10 min, short by 0.20)"),
            "{t}"
        );
        assert!(
            t.contains("clean network: mouth-to-ear <= 60 ms: MET"),
            "{t}"
        );
        assert!(
            t.contains("30 ms jitter: mouth-to-ear <= 100 ms: MET"),
            "{t}"
        );
        let table = table(&points, &ceiling);
        assert_eq!(table.lines().count(), 2 + 2 + 2, "{table}");
        assert!(
            table.contains("| 10 % | random | 30 | 3.10 | 3.10 | 2.90 |"),
            "{table}"
        );
    }
}
