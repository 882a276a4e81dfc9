//! Acceptance: a real call on a network that loses 10 % of the media datagrams in each
//! direction (`PARLEY_IMPAIR` on both clients) stays up for its full 60 s; each side's
//! summary counts frames played from redundant copies, rebuilt from FEC or DRED, and
//! concealed, each on its own; and because the callee's reports said its frames were being
//! lost (and the round-trip time did not grow: loss, not congestion), the caller sent
//! copies of its previous frames with every datagram and held its bitrate.

use parley_e2e::calls::Servers;
use parley_e2e::{similarity, ClientHome, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const START_BPS: u64 = 32_000;
const CALL_SECS: u64 = 60;

/// The speech fixture looped to `secs` seconds (48 kHz mono), so that neither side's
/// input ends before the caller hangs up.
fn long_speech(dir: &Path, secs: u64) -> anyhow::Result<PathBuf> {
    let speech = parley_audio::read_wav_48k_mono(parley_audio::speech_fixture())?;
    let path = dir.join("speech-long.wav");
    let mut wav = parley_audio::WavWriter::create(&path)?;
    let want = secs as usize * parley_audio::SAMPLE_RATE as usize;
    let mut written = 0;
    while written < want {
        let take = speech.len().min(want - written);
        wav.write(&speech[..take])?;
        written += take;
    }
    wav.finish()?;
    Ok(path)
}

/// Starts `bin` with `PARLEY_IMPAIR=spec`. The child copies the environment when it
/// starts, so setting it just before each spawn gives each client its own seed; this
/// test binary holds only this one test, so nothing else reads the environment meanwhile.
fn spawn_impaired(name: &str, spec: &str, args: &[&str]) -> anyhow::Result<Proc> {
    std::env::set_var("PARLEY_IMPAIR", spec);
    let proc = Proc::spawn(name, "parley", args);
    std::env::remove_var("PARLEY_IMPAIR");
    proc
}

/// Correlation of the heard recording with what was sent, one second in two, each
/// second aligned on its own: a jitter buffer that inserts or skips a frame now and then
/// (a pair of losses in a row makes it wait a period) shifts the rest of the recording,
/// which a single alignment of the whole minute, or of long windows, counts against the
/// audio. A second with a shift in it still scores low; the median does not care.
fn windowed_similarity(sent: &Path, heard: &Path) -> anyhow::Result<Vec<f32>> {
    let sent = parley_audio::read_wav_48k_mono(sent)?;
    let heard = parley_audio::read_wav_48k_mono(heard)?;
    let rate = parley_audio::SAMPLE_RATE as usize;
    let (window, slack) = (rate, rate / 2);
    let mut out = Vec::new();
    let mut start = slack;
    while start + window + slack <= sent.len().min(heard.len()) {
        let s = &sent[start..start + window];
        let h = &heard[start - slack..start + window + slack];
        out.push(parley_audio::align_and_correlate(s, h, 2 * slack).correlation);
        start += 2 * window; // Every other second: plenty, and half the debug-build time.
    }
    Ok(out)
}

fn u(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key}: {summary}"))
}

fn f(summary: &Value, key: &str) -> f64 {
    summary[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key}: {summary}"))
}

/// What both sides must show: the loss was there, copies (or FEC) rebuilt most of it,
/// and each count is its own.
fn check_side(who: &str, s: &Value) {
    let loss = f(s, "loss_percent");
    assert!((5.0..=15.0).contains(&loss), "{who}: loss {loss} %: {s}");
    let peer_loss = f(s, "peer_loss_percent");
    assert!(
        (5.0..=15.0).contains(&peer_loss),
        "{who}: peer saw {peer_loss} % of ours lost: {s}"
    );
    let r = &s["recovery"];
    let (copies, fec, concealed, lost) = (
        u(r, "redundant_copy"),
        u(r, "fec"),
        u(r, "concealed"),
        u(s, "frames_lost"),
    );
    assert!(copies > 0, "{who}: nothing played from a copy: {s}");
    assert!(concealed > 0, "{who}: nothing concealed: {s}");
    assert!(u(r, "received") > 1_000, "{who}: {s}");
    // Random loss is mostly single frames or pairs, which the next datagram's copies
    // rebuild exactly (FEC covers the first second, before the copies start).
    assert!(
        (copies + fec) * 10 >= lost * 7,
        "{who}: only {copies} + {fec} of {lost} lost frames rebuilt: {s}"
    );
    assert!(u(s, "reports_received") >= 40, "{who}: reports: {s}");
    assert_eq!(u(s, "datagrams_forged"), 0, "{who}: {s}");
}

#[test]
fn a_call_at_ten_percent_loss_stays_up_and_adapts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = long_speech(dir.path(), CALL_SECS + 5)?;
    let input = input.to_str().unwrap();

    let servers = Servers::start(1)?;
    let report_to = [servers.sn1.quic.to_string(), servers.sn2.quic.to_string()];

    let alice = ClientHome::new("alice")?;
    let bob = ClientHome::new("bob")?;
    let bob_heard = dir.path().join("bob-heard.wav");
    let mut bob_proc = spawn_impaired(
        "bob",
        "loss=10,seed=3",
        &[
            "--home",
            bob.path(),
            "online",
            "--json",
            "--auto-answer",
            "--supernode",
            &report_to[1],
            "--input",
            input,
            "--output",
            bob_heard.to_str().unwrap(),
            "--relay-only",
        ],
    )?;
    bob_proc.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"published\"")
    })?;
    let start = START_BPS.to_string();
    let secs = CALL_SECS.to_string();
    let mut alice_proc = spawn_impaired(
        "alice",
        "loss=10,seed=4",
        &[
            "--home",
            alice.path(),
            "call",
            &bob.id,
            "--json",
            "--supernode",
            &report_to[0],
            "--input",
            input,
            "--output",
            dir.path().join("alice-heard.wav").to_str().unwrap(),
            "--relay-only",
            "--bitrate",
            &start,
            "--duration",
            &secs,
        ],
    )?;
    alice_proc.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"impairment\"")
    })?;
    let end = alice_proc.wait_for(Duration::from_secs(CALL_SECS + 60), |l| {
        l.contains("\"event\":\"call_end\"")
    })?;
    let bob_end = bob_proc.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"call_end\"")
    })?;
    let alice_s: Value = serde_json::from_str(&end)?;
    let bob_s: Value = serde_json::from_str(&bob_end)?;
    let heard = similarity(Path::new(input), &bob_heard)?;
    let mut windows = windowed_similarity(Path::new(input), &bob_heard)?;
    eprintln!("alice: {alice_s}");
    eprintln!("bob: {bob_s}");
    eprintln!(
        "bob's recording: correlation {:.3} at lag {} samples; per second: {windows:.2?}",
        heard.correlation, heard.lag_samples
    );

    // It stayed up for the whole minute and ended the way it was meant to.
    assert_eq!(alice_s["ended_by"], "duration reached", "{alice_s}");
    assert!(
        f(&alice_s, "duration_s") >= (CALL_SECS - 1) as f64,
        "{alice_s}"
    );
    assert_eq!(bob_s["ended_by"], "peer hung up", "{bob_s}");
    assert!(f(&bob_s, "duration_s") >= (CALL_SECS - 2) as f64, "{bob_s}");
    check_side("alice", &alice_s);
    check_side("bob", &bob_s);

    // The caller answered the callee's loss reports with copies of its previous frames
    // (two at 10 %), not with a lower bitrate, and without FEC (the copies make it moot).
    assert!(u(&alice_s, "redundant_frames") >= 1, "{alice_s}");
    assert!(
        u(&alice_s, "redundant_bytes_sent") * 3 >= u(&alice_s, "bytes_sent"),
        "{alice_s}"
    );
    // (Loss alone used to take it down to the 20 kbit/s FEC floor; only a queue, which a
    // loaded test machine may briefly build, lowers it now.)
    assert!(u(&alice_s, "bitrate_min_bps") > 20_000, "{alice_s}");
    assert_eq!(u(&alice_s, "bitrate_max_bps"), START_BPS, "{alice_s}");
    assert_eq!(u(&alice_s, "expected_loss_percent"), 0, "{alice_s}");

    // Speech still got through: the recording follows what was sent, most of the time
    // about as closely as the codec alone allows (0.96 on a clean path).
    windows.sort_by(f32::total_cmp);
    assert!(windows.len() >= 25, "{windows:?}");
    let median = windows[windows.len() / 2];
    assert!(median >= 0.8, "median correlation {median}: {windows:?}");
    Ok(())
}
