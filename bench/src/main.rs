//! `quality`: the objective audio-quality benchmark of a Parley call.
//!
//! Every reference voice is sent through a whole call — two of the client's media engines
//! (`parley_proto::media::MediaSession` with the client's Opus codec) joined by a seeded
//! impaired network — on a virtual clock, for every point of a grid of loss rates, loss
//! patterns and jitter, with and without DRED; what the receiver plays is scored with
//! wideband PESQ (ITU-T P.862.2) and its mouth-to-ear delay measured. The result is a
//! markdown table. See the "Audio quality" section of `docs/performance.md`.
#![deny(missing_docs)]

mod pipeline;
mod report;

use anyhow::{ensure, Context, Result};
use clap::{Parser, ValueEnum};
use parley_bench::score::{self, Scorer, Voice};
use parley_proto::media::impair::{GilbertElliott, ImpairConfig};
use parley_proto::media::JitterConfig;
use pipeline::{CallConfig, RateMode, FRAME_MS, SAMPLES_PER_MS};
use report::{Ceiling, Point, Run};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Objective call audio quality: wideband PESQ and mouth-to-ear delay over a grid of
/// simulated network conditions.
#[derive(Parser, Debug)]
#[command(name = "quality")]
struct Args {
    /// Directory of reference voices (16 kHz mono WAV) [default: audio/fixtures/voices].
    #[arg(long)]
    voices: Option<PathBuf>,
    /// Loss rates to test, in percent.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 10.0, 20.0])]
    loss: Vec<f64>,
    /// Jitter to test: extra one-way delay drawn uniformly from 0..J ms per packet.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 30])]
    jitter: Vec<u64>,
    /// Mean burst length of bursty (Gilbert–Elliott) loss, in packets.
    #[arg(long, default_value_t = 3.0)]
    burst: f64,
    /// Calls per voice and grid point, each with its own network seed and clock phase.
    #[arg(long, default_value_t = 2)]
    reps: u64,
    /// Encoder bitrate, bits per second.
    #[arg(long, default_value_t = 32_000)]
    bitrate: i32,
    /// Base random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How the sender sets its encoder: `adaptive` (the client's rate controller, fed by
    /// receiver reports: what a call does) or `fixed` (the bitrate, FEC and DRED sized
    /// for each row's loss).
    #[arg(long, value_enum, default_value_t = Rate::Adaptive)]
    rate: Rate,
    /// Run each grid point with DRED allowed (`on`), without (`off`), or `both` side by
    /// side.
    #[arg(long, value_enum, default_value_t = DredMode::Both)]
    dred: DredMode,
    /// With `--rate fixed`: tell the encoder to expect this loss (percent) instead of
    /// each row's own loss (0 turns FEC off).
    #[arg(long)]
    expected_loss: Option<u8>,
    /// With `--rate fixed`: copies of the previous frames each datagram carries (0–3;
    /// RFC 2198-style redundancy).
    #[arg(long, default_value_t = 0)]
    redundancy: u8,
    /// Override the jitter buffer's minimum delay, ms [default: JitterConfig's].
    #[arg(long)]
    min_delay: Option<u64>,
    /// Override the jitter buffer's maximum delay, ms [default: JitterConfig's].
    #[arg(long)]
    max_delay: Option<u64>,
    /// Python interpreter with `pesq`, `numpy` and `soundfile` installed.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The PESQ helper script [default: bench/pesq_score.py].
    #[arg(long)]
    scorer: Option<PathBuf>,
    /// Keep the 16 kHz recordings PESQ scored in this directory (else a temporary one).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Parallel workers [default: the number of CPUs].
    #[arg(long)]
    jobs: Option<usize>,
}

/// `--rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Rate {
    /// Fixed bitrate, FEC sized for the row's loss.
    Fixed,
    /// The client's adaptive bitrate and FEC controller.
    Adaptive,
}

/// `--dred`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DredMode {
    /// Both, side by side.
    Both,
    /// DRED as the engine asks for it.
    On,
    /// Never.
    Off,
}

/// One simulated call to make.
struct Job {
    point: usize,
    voice: usize,
    rep: u64,
}

/// A call made, before PESQ has scored it.
struct Done {
    point: usize,
    run: Run,
    degraded: PathBuf,
    reference: PathBuf,
}

/// SplitMix64: derives independent seeds from a few small numbers.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn grid(args: &Args) -> Vec<Point> {
    let mut points = Vec::new();
    for &loss_pct in &args.loss {
        // Without loss the pattern makes no difference: one row.
        let patterns: &[bool] = if loss_pct > 0.0 {
            &[false, true]
        } else {
            &[false]
        };
        for &bursty in patterns {
            for &jitter_ms in &args.jitter {
                let dred: &[bool] = match args.dred {
                    DredMode::Both => &[true, false],
                    DredMode::On => &[true],
                    DredMode::Off => &[false],
                };
                for &dred in dred {
                    points.push(Point {
                        loss_pct,
                        bursty,
                        jitter_ms,
                        dred,
                    });
                }
            }
        }
    }
    points
}

fn impairment(p: &Point, burst: f64, seed: u64) -> ImpairConfig {
    let loss = p.loss_pct / 100.0;
    ImpairConfig {
        loss: if p.bursty { 0.0 } else { loss },
        burst: p.bursty.then(|| GilbertElliott::with_mean(loss, burst)),
        jitter: Duration::from_millis(p.jitter_ms),
        seed,
        ..ImpairConfig::default()
    }
}

/// Runs `f` over `0..n` on `jobs` threads and returns the results in order.
fn parallel<T: Send>(
    n: usize,
    jobs: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i);
                if let Ok(mut slots) = results.lock() {
                    slots[i] = Some(r);
                }
            });
        }
    });
    let slots = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    slots
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a worker panicked"))))
        .collect()
}

/// The codec alone, for each voice, with and without FEC bits. Returns the runs (PESQ
/// to be filled in) and the files to score.
fn ceilings(
    voices: &[Voice],
    args: &Args,
    dir: &Path,
    jobs: usize,
) -> Result<Vec<(u8, Run, PathBuf, PathBuf)>> {
    parallel(voices.len() * 2, jobs, |i| {
        let voice = &voices[i / 2];
        let expected_loss = if i % 2 == 0 { 0 } else { 10 };
        let out = pipeline::opus_ceiling(&voice.pcm48, args.bitrate, expected_loss)?;
        let path = dir.join(format!("ceiling-fec{expected_loss}-{}.wav", voice.name));
        let a = score::write_degraded(voice, &out, &path)?;
        let run = Run {
            correlation: f64::from(a.correlation),
            mouth_to_ear_ms: a.lag_samples as f64 / SAMPLES_PER_MS,
            ..Run::default()
        };
        Ok((expected_loss, run, voice.path.clone(), path))
    })
}

fn call(
    job: &Job,
    points: &[Point],
    voices: &[Voice],
    args: &Args,
    lookahead_ms: f64,
    dir: &Path,
) -> Result<Done> {
    let point = &points[job.point];
    let voice = &voices[job.voice];
    // The network seed depends on the condition itself (not its place in the grid), so a
    // smaller grid reproduces the same calls as the full one.
    let condition = (point.loss_pct * 1000.0).round() as u64
        ^ (u64::from(point.bursty) << 20)
        ^ (point.jitter_ms << 24);
    let net_seed = mix(mix(mix(args.seed) ^ condition) ^ (job.voice as u64) << 32 ^ job.rep);
    // The receiver's clock phase depends on the voice and repetition only, so that every
    // grid point sees the same phases and their delays compare like with like; the
    // calls of a grid point spread their phases evenly over a frame.
    let calls = voices.len() as u64 * args.reps;
    let phase_ms = (job.voice as u64 * args.reps + job.rep) * FRAME_MS / calls.max(1);
    let mut jitter = JitterConfig::default();
    if let Some(ms) = args.min_delay {
        jitter.min_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = args.max_delay {
        jitter.max_delay = Duration::from_millis(ms);
    }
    let own_loss = point.loss_pct.round().clamp(0.0, 100.0) as u8;
    let rate = match args.rate {
        Rate::Fixed => RateMode::Fixed {
            expected_loss_pct: args.expected_loss.unwrap_or(own_loss),
            redundant_frames: args.redundancy,
        },
        Rate::Adaptive => RateMode::Adaptive,
    };
    let config = CallConfig {
        bitrate: args.bitrate,
        rate,
        dred: point.dred,
        jitter,
        impair: impairment(point, args.burst, net_seed),
        phase_ms,
    };
    let out = pipeline::simulate_call(&voice.pcm48, &config)?;
    // Every grid point has its own file: the DRED-on and -off calls of a condition used
    // to share one, so both columns scored whichever call wrote it last.
    let name = format!(
        "loss{}-{}-jitter{}-dred{}-{}-{}.wav",
        point.loss_pct,
        point.pattern(),
        point.jitter_ms,
        if point.dred { "on" } else { "off" },
        voice.name,
        job.rep
    );
    let degraded = dir.join(name);
    let a = score::write_degraded(voice, &out.pcm, &degraded)?;
    let total_ms = out.phase_ms as f64 + a.lag_samples as f64 / SAMPLES_PER_MS;
    let mouth_to_ear_ms = total_ms - out.mean_network_ms;
    let j = &out.jitter;
    let run = Run {
        pesq: f64::NAN,
        correlation: f64::from(a.correlation),
        mouth_to_ear_ms,
        jitter_buffer_ms: mouth_to_ear_ms - FRAME_MS as f64 - lookahead_ms,
        frame_mouth_to_ear_ms: out.mean_frame_delay_ms + lookahead_ms - out.mean_network_ms,
        frames: out.frames as f64,
        network_lost: out.network_lost as f64,
        recovered: out.recovered as f64,
        concealed: out.concealed as f64,
        by_copy: out.recovery.redundant as f64,
        by_fec: out.recovery.fec as f64,
        by_dred: out.recovery.dred as f64,
        codec_concealed: out.recovery.concealed as f64,
        redundant_frames: out.mean_redundant_frames,
        late: j.late as f64,
        discarded: j.discarded as f64,
        bitrate_kbps: out.mean_bitrate_bps / 1000.0,
        expected_loss_pct: out.mean_expected_loss_pct,
        dred_ms: out.mean_dred_ms,
    };
    Ok(Done {
        point: job.point,
        run,
        degraded,
        reference: voice.path.clone(),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.reps > 0, "--reps must be at least 1");
    ensure!(
        args.loss.iter().all(|l| (0.0..=100.0).contains(l)),
        "--loss takes percentages from 0 to 100"
    );
    ensure!(
        args.burst >= 1.0,
        "--burst is a mean burst length of at least 1 packet"
    );
    ensure!(
        args.rate == Rate::Fixed || args.expected_loss.is_none(),
        "--expected-loss only applies to --rate fixed"
    );
    ensure!(
        args.rate == Rate::Fixed || args.redundancy == 0,
        "--redundancy only applies to --rate fixed"
    );
    ensure!(
        usize::from(args.redundancy) <= parley_proto::call::media::MAX_REDUNDANT,
        "--redundancy takes 0 to {}",
        parley_proto::call::media::MAX_REDUNDANT
    );
    let started = Instant::now();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let voices_dir = args
        .voices
        .clone()
        .unwrap_or_else(|| manifest.join("../audio/fixtures/voices"));
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let scorer = Scorer {
        python: args.python.clone(),
        script: args.scorer.clone().unwrap_or_else(score::default_script),
        jobs,
    };
    scorer.check()?;
    let voices = Voice::load_dir(&voices_dir)?;
    let temp = tempfile::tempdir().context("temporary directory")?;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };

    // The codec alone: its score is the ceiling, its lag the codec look-ahead.
    let ceiling_runs = ceilings(&voices, &args, &dir, jobs)?;
    let pairs: Vec<(PathBuf, PathBuf)> = ceiling_runs
        .iter()
        .map(|(_, _, r, d)| (r.clone(), d.clone()))
        .collect();
    let scores = scorer.score(&pairs)?;
    let mut clean = Vec::new();
    let mut client_default = Vec::new();
    for ((expected_loss, mut run, _, _), pesq) in ceiling_runs.into_iter().zip(scores) {
        run.pesq = pesq;
        if expected_loss == 0 {
            &mut clean
        } else {
            &mut client_default
        }
        .push(run);
    }
    let clean = report::summarize(&clean);
    let lookahead_ms = clean.mean.mouth_to_ear_ms;
    let ceiling = Ceiling {
        client_default: report::summarize(&client_default),
        clean,
        lookahead_ms,
    };

    // The grid.
    let points = grid(&args);
    let todo: Vec<Job> = (0..points.len())
        .flat_map(|point| {
            (0..voices.len())
                .flat_map(move |voice| (0..args.reps).map(move |rep| Job { point, voice, rep }))
        })
        .collect();
    eprintln!(
        "quality: {} voices × {} grid points × {} reps = {} calls on {jobs} workers",
        voices.len(),
        points.len(),
        args.reps,
        todo.len()
    );
    let done = parallel(todo.len(), jobs, |i| {
        call(&todo[i], &points, &voices, &args, lookahead_ms, &dir)
    })?;
    eprintln!(
        "quality: calls simulated in {:.1} s, scoring",
        started.elapsed().as_secs_f64()
    );
    let pairs: Vec<(PathBuf, PathBuf)> = done
        .iter()
        .map(|d| (d.reference.clone(), d.degraded.clone()))
        .collect();
    let scores = scorer.score(&pairs)?;
    let mut per_point: Vec<Vec<Run>> = vec![Vec::new(); points.len()];
    for (d, pesq) in done.into_iter().zip(scores) {
        per_point[d.point].push(Run { pesq, ..d.run });
    }
    let rows: Vec<(Point, report::Summary)> = points
        .iter()
        .zip(&per_point)
        .map(|(p, runs)| (*p, report::summarize(runs)))
        .collect();

    let frames = rows.first().map_or(0.0, |(_, r)| r.mean.frames);
    let rate = match args.rate {
        Rate::Fixed => "fixed bitrate, FEC and DRED sized for the row's loss",
        Rate::Adaptive => "the client's adaptive rate, FEC and DRED controller",
    };
    let receiver = match (args.min_delay, args.max_delay) {
        (None, None) => "the adaptive jitter buffer".into(),
        (min, max) => format!(
            "the adaptive jitter buffer (min delay {}, max delay {})",
            min.map_or("default".into(), |ms| format!("{ms} ms")),
            max.map_or("default".into(), |ms| format!("{ms} ms"))
        ),
    };
    println!(
        "Wideband PESQ (P.862.2) and software mouth-to-ear delay; {} voices × {} calls per row, \
         Opus {} kbit/s ({rate}), {receiver}, about {frames:.0} frames per call; \
         Opus look-ahead {lookahead_ms:.1} ms.\n",
        voices.len(),
        args.reps,
        f64::from(args.bitrate) / 1000.0
    );
    println!("{}", report::table(&rows, &ceiling));
    println!("Details:\n\n{}", report::details(&rows));
    println!("Targets:\n\n{}", report::targets(&rows, &ceiling));
    if let Some(d) = &args.keep {
        println!("Recordings scored: {}", d.display());
    }
    eprintln!("quality: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grid_has_one_lossless_row_per_jitter() {
        let args = Args::parse_from(["quality"]);
        let points = grid(&args);
        // (2 jitters + 2 loss rates × 2 patterns × 2 jitters) × with and without DRED.
        assert_eq!(points.len(), (2 + 2 * 2 * 2) * 2);
        assert_eq!(points.iter().filter(|p| p.pattern() == "none").count(), 4);
        let bursty = impairment(&points[points.len() - 1], 3.0, 1);
        assert!(bursty.burst.is_some() && bursty.loss == 0.0);
        assert_eq!(bursty.jitter, Duration::from_millis(30));
    }
}
