//! Conference benchmark (issue 16): N real `parley` processes on loopback, every leg
//! through a relay (`--relay-only`), the first hosting. Each person speaks 3 s of a
//! fixture voice in their own 4 s window (one at a time); every recording is then scored
//! with wideband PESQ against every other speaker's segment (`parley_bench::score`: one
//! alignment lag found over the whole recording, 16 kHz, the PyPI `pesq` package). Also
//! printed: CPU per process (user + system time from `/proc/PID/stat` over the call)
//! and bandwidth per leg (bytes each side sent).
//!
//! Then the delay: a host, an echo participant (`online --echo`) and a silent one; the
//! host's recording starts with its microphone, so where its own voice comes back is
//! the round trip host → echo → host through the bus, both legs relayed.
//!
//! Run (binaries built first, `scripts/install-deps.sh` for PESQ):
//! `cargo build --workspace --bins && cargo run -p parley-e2e --example conference_bench -- 8`

use anyhow::{Context, Result};
use parley_audio::{align_and_correlate, read_wav_48k_mono, WavWriter, FRAME_SAMPLES};
use parley_e2e::calls::Servers;
use parley_e2e::client::online;
use parley_e2e::{ClientHome, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RATE: usize = 48_000;
const WINDOW_S: f64 = 4.0;
const SPEECH_S: f64 = 3.0;
const LEAD_S: f64 = 2.0;

/// Writes the first `secs` of a 16 kHz fixture voice, starting at `from_s`, as a 16 kHz
/// reference.
fn reference(voice: &Path, from_s: f64, secs: f64, out: &Path) -> Result<()> {
    let mut r = hound::WavReader::open(voice)?;
    let spec = r.spec();
    let all: Vec<i16> = r.samples::<i16>().collect::<Result<_, _>>()?;
    let rate = spec.sample_rate as f64;
    let (a, b) = ((from_s * rate) as usize, ((from_s + secs) * rate) as usize);
    let mut w = hound::WavWriter::create(out, spec)?;
    for s in &all[a.min(all.len())..b.min(all.len())] {
        w.write_sample(*s)?;
    }
    w.finalize()?;
    Ok(())
}

fn padded(path: &Path, before: f64, speech: &[f32], total: f64) -> Result<()> {
    let mut all = vec![0.0f32; (before * RATE as f64) as usize];
    all.extend_from_slice(speech);
    all.resize((total * RATE as f64) as usize, 0.0);
    let mut w = WavWriter::create(path)?;
    for chunk in all.chunks(FRAME_SAMPLES) {
        w.write(chunk)?;
    }
    w.finish()?;
    Ok(())
}

/// User + system CPU seconds of a process so far.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime), counted from 1 with the two before ')' removed.
    (ticks(11) + ticks(12)) / 100.0
}

fn event(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or(Value::Null)
}

struct Person {
    home: ClientHome,
    proc: Proc,
    heard: PathBuf,
}

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(8);
    anyhow::ensure!((3..=8).contains(&n), "3 to 8 people");
    // A relay holds at most 8 legs per key by default (docs/relay.md): the host has N-1.
    let lab = Servers::start_with(1, &["--max-legs-per-key", "8"])?;
    let dir = tempfile::tempdir()?;
    let sn = lab.sn1.quic.to_string();
    let voices = parley_audio::speech_fixture()
        .parent()
        .context("fixtures")?
        .join("voices");
    let names = [
        "en-gb-male",
        "en-us-female",
        "de-female",
        "es-male",
        "en-us-male",
    ];
    let total = LEAD_S + WINDOW_S * n as f64 + 3.0;
    let mut refs = Vec::new();
    let mut inputs = Vec::new();
    for k in 0..n {
        let r = dir.path().join(format!("ref{k}.wav"));
        let from = 3.5 * (k / names.len()) as f64;
        reference(
            &voices.join(format!("{}.wav", names[k % names.len()])),
            from,
            SPEECH_S,
            &r,
        )?;
        let speech = read_wav_48k_mono(&r)?;
        let input = dir.path().join(format!("in{k}.wav"));
        // The host's input ends the conference: the others' run a little longer.
        let len = if k == 0 { total } else { total + 5.0 };
        padded(&input, LEAD_S + WINDOW_S * k as f64, &speech, len)?;
        refs.push(r);
        inputs.push(input);
    }

    let host = ClientHome::new("p0")?;
    let mut host_online = online("p0", &host, &["--supernode", &sn, "--relay-only"], &[])?;
    let mut people = Vec::new();
    for (k, input) in inputs.iter().enumerate().skip(1) {
        let name = format!("p{k}");
        let home = ClientHome::new(&name)?;
        let heard = dir.path().join(format!("heard{k}.wav"));
        let args = [
            "--supernode",
            &sn,
            "--relay-only",
            "--auto-answer",
            "--input",
            input.to_str().context("path")?,
            "--output",
            heard.to_str().context("path")?,
        ];
        let proc = online(&name, &home, &args, &[])?;
        people.push(Person { home, proc, heard });
    }
    let host_heard = dir.path().join("heard0.wav");
    let mut args = vec!["--home".to_string(), host.path().to_string(), "call".into()];
    args.extend(people.iter().map(|p| p.home.id.clone()));
    args.extend([
        "--json".into(),
        "--relay-only".into(),
        "--input".into(),
        inputs[0].to_string_lossy().into_owned(),
        "--output".into(),
        host_heard.to_string_lossy().into_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cpu0: Vec<f64> = std::iter::once(host_online.pid())
        .chain(people.iter().map(|p| p.proc.pid()))
        .map(cpu_s)
        .collect();
    let started = Instant::now();
    let mut call = Proc::spawn("p0-call", "parley", &args)?;
    call.wait_for(Duration::from_secs(120), |l| {
        l.contains("\"event\":\"call_end\"")
    })?;
    let mut left = Vec::new();
    for p in &people {
        let line = call.wait_for(Duration::ZERO, |l| {
            l.contains("\"event\":\"participant_left\"") && l.contains(&p.home.id)
        })?;
        left.push(event(&line));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu1: Vec<f64> = std::iter::once(host_online.pid())
        .chain(people.iter().map(|p| p.proc.pid()))
        .map(cpu_s)
        .collect();
    let mut ends = Vec::new();
    for p in people.iter_mut() {
        let line = p.proc.wait_for(Duration::from_secs(30), |l| {
            l.contains("\"event\":\"call_end\"")
        })?;
        ends.push(event(&line));
    }
    let _ = host_online.wait_for(Duration::from_secs(1), |_| false);

    println!("# {n} people, every leg relayed, one speaking at a time; {wall:.1} s");
    println!(
        "\n| listener \\ speaker | {} |",
        (0..n)
            .map(|k| format!("p{k}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(n));
    let mut all = Vec::new();
    let heard: Vec<PathBuf> = std::iter::once(host_heard.clone())
        .chain(people.iter().map(|p| p.heard.clone()))
        .collect();
    for (l, h) in heard.iter().enumerate() {
        let mut row = Vec::new();
        for (s, r) in refs.iter().enumerate() {
            if s == l {
                // Never themselves: the correlation with their own speech.
                let own = read_wav_48k_mono(r)?;
                let rec = read_wav_48k_mono(h)?;
                let c = align_and_correlate(&own, &rec, rec.len()).correlation;
                row.push(format!("(own {c:.2})"));
                continue;
            }
            // The speaker's window (±2.5 s) of the recording: aligning 3 s of speech
            // over the whole recording is slow in a debug build.
            let rec = read_wav_48k_mono(h)?;
            let at = ((LEAD_S + WINDOW_S * s as f64 - 2.5) * RATE as f64) as usize;
            let to = (at + ((SPEECH_S + 5.0) * RATE as f64) as usize).min(rec.len());
            let window = dir.path().join(format!("w{l}-{s}.wav"));
            let mut w = WavWriter::create(&window)?;
            for chunk in rec[at.min(to)..to].chunks(FRAME_SAMPLES) {
                w.write(chunk)?;
            }
            w.finish()?;
            match parley_bench::score::pesq_of_recording(r, &window, 5.0) {
                Ok((mos, _)) => {
                    all.push(mos);
                    row.push(format!("{mos:.2}"));
                }
                Err(e) => row.push(format!("error: {e}")),
            }
        }
        println!("| p{l} | {} |", row.join(" | "));
    }
    all.sort_by(f64::total_cmp);
    if !all.is_empty() {
        println!(
            "\nPESQ-WB over {} listener/speaker pairs: min {:.2}, median {:.2}, mean {:.2}",
            all.len(),
            all[0],
            all[all.len() / 2],
            all.iter().sum::<f64>() / all.len() as f64
        );
    }
    println!("\n| process | CPU s | CPU % of one core | sent kbit/s |");
    println!("|---|---:|---:|---:|");
    let host_sent: f64 = left
        .iter()
        .map(|v| {
            v["bytes_sent"].as_f64().unwrap_or(0.0) * 8.0
                / v["duration_s"].as_f64().unwrap_or(1.0).max(0.1)
                / 1000.0
        })
        .sum();
    for (k, (a, b)) in cpu0.iter().zip(&cpu1).enumerate() {
        let sent = if k == 0 {
            host_sent
        } else {
            let e = &ends[k - 1];
            e["bytes_sent"].as_f64().unwrap_or(0.0) * 8.0
                / e["duration_s"].as_f64().unwrap_or(1.0).max(0.1)
                / 1000.0
        };
        println!(
            "| p{k}{} | {:.2} | {:.1} | {sent:.1} |",
            if k == 0 { " (host)" } else { "" },
            b - a,
            100.0 * (b - a) / wall
        );
    }
    drop(call);
    drop(people);
    drop(host_online);
    round_trip(&lab, dir.path(), &inputs[0], &refs[0])
}

/// The host's own voice back through an echo participant (see the module docs).
fn round_trip(lab: &Servers, dir: &Path, _host_in: &Path, host_ref: &Path) -> Result<()> {
    let sn = lab.sn1.quic.to_string();
    let speech = read_wav_48k_mono(host_ref)?;
    let input = dir.join("rt-in.wav");
    padded(&input, 1.0, &speech, 6.0)?;
    let host = ClientHome::new("rt-host")?;
    let _h = online("rt-host", &host, &["--supernode", &sn, "--relay-only"], &[])?;
    let echo = ClientHome::new("rt-echo")?;
    let _e = online(
        "rt-echo",
        &echo,
        &["--supernode", &sn, "--relay-only", "--echo"],
        &[],
    )?;
    let quiet = ClientHome::new("rt-quiet")?;
    let silence = dir.join("rt-silence.wav");
    padded(&silence, 0.0, &[], 20.0)?;
    let _q = online(
        "rt-quiet",
        &quiet,
        &[
            "--supernode",
            &sn,
            "--relay-only",
            "--auto-answer",
            "--input",
            silence.to_str().context("path")?,
        ],
        &[],
    )?;
    let heard = dir.join("rt-heard.wav");
    let ran = parley_e2e::client::run(
        host.path(),
        &[
            "call",
            &echo.id,
            &quiet.id,
            "--json",
            "--relay-only",
            "--input",
            input.to_str().context("path")?,
            "--output",
            heard.to_str().context("path")?,
        ],
        &[],
        Duration::from_secs(60),
    )?;
    anyhow::ensure!(ran.code == 0, "round-trip conference failed: {ran:?}");
    let rec = read_wav_48k_mono(&heard)?;
    let s = align_and_correlate(&speech, &rec, rec.len());
    let ms = (s.lag_samples as f64 / RATE as f64 - 1.0) * 1000.0;
    println!(
        "\nround trip host → echo → host, both legs relayed, through the bus twice: \
         {ms:.0} ms (correlation {:.2}); one way ≈ {:.0} ms",
        s.correlation,
        ms / 2.0
    );
    Ok(())
}
