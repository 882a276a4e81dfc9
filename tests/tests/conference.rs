//! Acceptance (issue 16): conference calls between real `parley` processes on loopback.
//! The caller hosts and mixes; everyone else runs an ordinary two-party call with it.
//!
//! Each speaker sends a different voice (`audio/fixtures/voices/`) in its own time
//! window, padded with silence; a recording "contains" a voice when that voice, each
//! second aligned on its own anywhere in the recording, correlates with it (Pearson ≥
//! [`HEARD`]; two Opus encodings in tandem score about 0.85–0.95), and does not when it
//! stays below [`NOT_HEARD`] (unrelated speech scores about 0.1).

use parley_audio::{align_segments, read_wav_48k_mono, WavWriter, FRAME_SAMPLES};
use parley_e2e::calls::Servers;
use parley_e2e::client::{online, run, Ran};
use parley_e2e::{ClientHome, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HEARD: f32 = 0.6;
const NOT_HEARD: f32 = 0.3;
const RATE: usize = 48_000;
const T: Duration = Duration::from_secs(30);

/// The first `secs` of one fixture voice, 48 kHz mono.
fn voice(name: &str, secs: f64) -> anyhow::Result<Vec<f32>> {
    let path = parley_audio::speech_fixture()
        .parent()
        .unwrap()
        .join("voices")
        .join(format!("{name}.wav"));
    let mut v = read_wav_48k_mono(path)?;
    v.truncate((secs * RATE as f64) as usize);
    Ok(v)
}

/// Writes `speech` preceded by `before` s of silence and followed by `after` s.
fn padded(path: &Path, before: f64, speech: &[f32], after: f64) -> anyhow::Result<()> {
    let mut all = vec![0.0f32; (before * RATE as f64) as usize];
    all.extend_from_slice(speech);
    all.extend(std::iter::repeat_n(0.0, (after * RATE as f64) as usize));
    let mut w = WavWriter::create(path)?;
    for chunk in all.chunks(FRAME_SAMPLES) {
        w.write(chunk)?;
    }
    w.finish()?;
    Ok(())
}

/// How well `voice` lines up anywhere in the recording at `heard`, and where (samples):
/// each second of the voice aligned on its own (`align_segments`), since a loaded
/// machine shifts playout by a frame now and then (the bus re-primes a queue that ran
/// dry, a jitter buffer adapts) and one alignment for the whole voice would score the
/// part after the shift as unheard.
fn found(voice: &[f32], heard: &Path) -> anyhow::Result<(f32, isize)> {
    let heard = read_wav_48k_mono(heard)?;
    let s = align_segments(voice, &heard, heard.len().max(voice.len()), RATE);
    Ok((s.correlation, s.lag_samples))
}

/// A participant: `online --auto-answer`, sending `input`, recording to `DIR/NAME.wav`.
struct Person {
    home: ClientHome,
    proc: Proc,
    heard: PathBuf,
}

fn person(name: &str, sn: &str, dir: &Path, input: &Path) -> anyhow::Result<Person> {
    let home = ClientHome::new(name)?;
    let heard = dir.join(format!("{name}.wav"));
    let args = [
        "--supernode",
        sn,
        "--auto-answer",
        "--input",
        input.to_str().unwrap(),
        "--output",
        heard.to_str().unwrap(),
    ];
    let proc = online(name, &home, &args, &[])?;
    Ok(Person { home, proc, heard })
}

/// Alice's running client, which will host.
fn host(sn: &str) -> anyhow::Result<(ClientHome, Proc)> {
    let alice = ClientHome::new("alice")?;
    let proc = online("alice", &alice, &["--supernode", sn, "--auto-answer"], &[])?;
    Ok((alice, proc))
}

/// `call IDS... --json --input IN --output OUT`: host a conference.
fn hosting(ids: &[&str], input: &Path, output: &Path) -> Vec<String> {
    let mut args = vec!["call".to_string()];
    args.extend(ids.iter().map(|s| s.to_string()));
    for (flag, path) in [("--input", input), ("--output", output)] {
        args.extend([flag.to_string(), path.to_string_lossy().into_owned()]);
    }
    args.push("--json".into());
    args
}

fn ran_events(ran: &Ran, name: &str) -> Vec<Value> {
    ran.events()
        .into_iter()
        .filter(|v| v["event"] == name)
        .collect()
}

#[test]
fn three_people_each_hear_the_others_and_never_themselves() -> anyhow::Result<()> {
    let lab = Servers::start(1)?;
    let dir = tempfile::tempdir()?;
    let (sn1, sn2) = (lab.sn1.quic.to_string(), lab.sn2.quic.to_string());
    let (a, b) = (voice("en-gb-male", 3.5)?, voice("en-us-female", 3.5)?);
    let (a_in, b_in, c_in) = (
        dir.path().join("a-in.wav"),
        dir.path().join("b-in.wav"),
        dir.path().join("c-in.wav"),
    );
    // Alice speaks at about 1-4.5 s, Bob at about 6-9.5 s; Carol says nothing.
    padded(&a_in, 1.0, &a, 8.0)?;
    padded(&b_in, 6.0, &b, 2.0)?;
    padded(&c_in, 0.0, &[], 20.0)?;
    let (alice, _alice_online) = host(&sn1)?;
    let mut bob = person("bob", &sn2, dir.path(), &b_in)?;
    let mut carol = person("carol", &sn2, dir.path(), &c_in)?;

    let alice_heard = dir.path().join("alice.wav");
    let args = hosting(&[&bob.home.id, &carol.home.id], &a_in, &alice_heard);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run(alice.path(), &args, &[], Duration::from_secs(60))?;
    assert_eq!(ran.code, 0, "{ran:?}");
    let joined = ran_events(&ran, "participant_joined");
    assert_eq!(joined.len(), 2, "{ran:?}");
    for p in &joined {
        assert!(p["safety_code"].as_str().is_some_and(|c| !c.is_empty()));
    }
    let end = ran.event("call_end").expect("call_end");
    assert_eq!(end["conference"], true);
    assert_eq!(end["participants"], 2);
    // Alice (the host) and Bob were heard speaking, Carol never.
    let speaking = ran_events(&ran, "speaking");
    let spoke = |id: &str| {
        speaking
            .iter()
            .any(|v| v["peer"] == id && v["speaking"] == true)
    };
    assert!(spoke(&alice.id), "{speaking:?}");
    assert!(spoke(&bob.home.id), "{speaking:?}");
    assert!(!spoke(&carol.home.id), "{speaking:?}");
    // Everyone is shown the same three members and the same group safety code.
    let rosters = ran_events(&ran, "roster");
    let all = rosters
        .iter()
        .find(|r| r["members"].as_array().map(Vec::len) == Some(3))
        .unwrap_or_else(|| panic!("the host shows all three: {rosters:?}"));
    let code = all["group_safety_code"]
        .as_str()
        .expect("a code")
        .to_string();
    let everyone = [alice.id.clone(), bob.home.id.clone(), carol.home.id.clone()];
    for p in [&mut bob, &mut carol] {
        let line = p.proc.wait_for(T, |l| {
            l.contains("\"event\":\"roster\"") && everyone.iter().all(|id| l.contains(id.as_str()))
        })?;
        let shown: Value = serde_json::from_str(&line)?;
        assert_eq!(shown["group_safety_code"], code.as_str(), "{line}");
        p.proc
            .wait_for(T, |l| l.contains("\"event\":\"call_end\""))?;
    }

    let (ca, ca_at) = found(&a, &carol.heard)?;
    let (cb, cb_at) = found(&b, &carol.heard)?;
    let (ba, _) = found(&a, &bob.heard)?;
    let (bb, _) = found(&b, &bob.heard)?;
    let (aa, _) = found(&a, &alice_heard)?;
    let (ab, _) = found(&b, &alice_heard)?;
    eprintln!(
        "carol: alice {ca:.2} at {:.2} s, bob {cb:.2} at {:.2} s; bob: alice {ba:.2}, \
         himself {bb:.2}; alice: bob {ab:.2}, herself {aa:.2}",
        ca_at as f64 / RATE as f64,
        cb_at as f64 / RATE as f64
    );
    assert!(ca >= HEARD && cb >= HEARD, "carol hears both");
    assert!(ca_at < cb_at, "carol hears alice first, then bob");
    // Bob's speech started about 5 s after Alice's.
    let gap = (cb_at - ca_at) as f64 / RATE as f64;
    assert!((3.0..8.0).contains(&gap), "bob {gap:.2} s after alice");
    assert!(ba >= HEARD, "bob hears alice");
    assert!(bb < NOT_HEARD, "bob does not hear himself");
    assert!(ab >= HEARD, "alice hears bob");
    assert!(aa < NOT_HEARD, "alice does not hear herself");
    Ok(())
}

#[test]
fn a_latecomer_hears_the_call_a_leaver_does_not_end_it_and_strangers_stay_out() -> anyhow::Result<()>
{
    let lab = Servers::start(1)?;
    let dir = tempfile::tempdir()?;
    let (sn1, sn2) = (lab.sn1.quic.to_string(), lab.sn2.quic.to_string());
    let a = voice("en-gb-male", 3.5)?;
    let (a_in, quiet) = (dir.path().join("a-in.wav"), dir.path().join("quiet.wav"));
    // Alice speaks at about 16-19.5 s, after everything below has happened.
    padded(&a_in, 16.0, &a, 1.5)?;
    padded(&quiet, 0.0, &[], 40.0)?;
    let (alice, _alice_online) = host(&sn1)?;
    let bob = person("bob", &sn2, dir.path(), &quiet)?;
    let mut carol = person("carol", &sn2, dir.path(), &quiet)?;
    let mut dave = person("dave", &sn1, dir.path(), &quiet)?;
    let eve = ClientHome::new("eve")?;

    let alice_heard = dir.path().join("alice.wav");
    let mut args = vec!["--home".to_string(), alice.path().to_string()];
    args.extend(hosting(
        &[&bob.home.id, &carol.home.id],
        &a_in,
        &alice_heard,
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut host = Proc::spawn("alice-call", "parley", &args)?;
    for who in [&bob.home.id, &carol.home.id] {
        host.wait_for(T, |l| {
            l.contains("\"event\":\"participant_joined\"") && l.contains(who.as_str())
        })?;
    }

    // Dave is added mid-call; `add` returns once he joined.
    let added = run(alice.path(), &["add", &dave.home.id, "--json"], &[], T)?;
    assert_eq!(added.code, 0, "{added:?}");
    assert!(added.event("added").is_some(), "{added:?}");
    // `status` lists the three, connected, each with a safety code.
    let status = run(alice.path(), &["status", "--json"], &[], T)?;
    let list = status.event("status").unwrap()["call"]["participants"].clone();
    let list = list.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 3, "{status:?}");
    for p in &list {
        assert_eq!(p["state"], "connected", "{p}");
        assert!(p["safety_code"].as_str().is_some(), "{p}");
    }
    // Adding him again, or adding oneself, is refused.
    let again = run(alice.path(), &["add", &dave.home.id, "--json"], &[], T)?;
    assert_ne!(again.code, 0, "{again:?}");

    // Eve (a valid identity, never invited) calls the host: busy, nothing connects.
    let eve_heard = dir.path().join("eve.wav");
    let eve_call = run(
        eve.path(),
        &[
            "call",
            &alice.id,
            "--json",
            "--supernode",
            &sn2,
            "--input",
            quiet.to_str().unwrap(),
            "--output",
            eve_heard.to_str().unwrap(),
        ],
        &[],
        T,
    )?;
    assert_eq!(eve_call.code, 4, "{eve_call:?}");
    assert_eq!(eve_call.event("call_end").unwrap()["outcome"], "busy");
    assert!(eve_call.event("connected").is_none());
    let eve_got = read_wav_48k_mono(&eve_heard).unwrap_or_default();
    assert!(eve_got.iter().all(|s| *s == 0.0), "eve heard something");
    // Calling a participant instead: busy too.
    let eve_call = run(
        eve.path(),
        &[
            "call",
            &carol.home.id,
            "--json",
            "--supernode",
            &sn2,
            "--input",
            quiet.to_str().unwrap(),
        ],
        &[],
        T,
    )?;
    assert_ne!(eve_call.code, 0, "{eve_call:?}");
    assert!(eve_call.event("connected").is_none());

    // Bob leaves; the call goes on for the others.
    let left = run(bob.home.path(), &["hangup", "--json"], &[], T)?;
    assert_eq!(left.code, 0, "{left:?}");
    host.wait_for(T, |l| {
        l.contains("\"event\":\"participant_left\"") && l.contains(&bob.home.id)
    })?;
    // Alice then speaks (the host's `speaking` comes after Bob left), and the conference
    // ends when her input does.
    let end = host.wait_for(Duration::from_secs(60), |l| {
        l.contains("\"event\":\"call_end\"")
    })?;
    let end: Value = serde_json::from_str(&end)?;
    assert_eq!(end["participants"], 3, "{end}");
    assert_eq!(host.wait_exit(T)?.code(), Some(0));
    for p in [&mut carol, &mut dave] {
        let line = p
            .proc
            .wait_for(T, |l| l.contains("\"event\":\"call_end\""))?;
        let v: Value = serde_json::from_str(&line)?;
        assert_eq!(v["ended_by"], "peer hung up", "{v}");
    }
    let (dave_a, _) = found(&a, &dave.heard)?;
    let (carol_a, _) = found(&a, &carol.heard)?;
    let bob_a = found(&a, &bob.heard).map(|f| f.0).unwrap_or(0.0);
    eprintln!("alice's speech: dave {dave_a:.2}, carol {carol_a:.2}, bob (gone) {bob_a:.2}");
    assert!(dave_a >= HEARD, "the latecomer hears the call");
    assert!(carol_a >= HEARD, "carol still hears it after bob left");
    assert!(bob_a < NOT_HEARD, "bob heard what was said after he left");
    Ok(())
}

#[test]
fn a_conference_holds_at_most_eight_people() -> anyhow::Result<()> {
    let me = ClientHome::new("host")?;
    let others = (0..8)
        .map(|i| ClientHome::new(&format!("p{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut args = vec!["call"];
    args.extend(others.iter().map(|o| o.id.as_str()));
    let ran = run(me.path(), &args, &[("PARLEY_NO_AUDIO_DEVICES", "1")], T)?;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("at most 8 people"), "{ran:?}");
    // The same person twice, or oneself, is a usage error too.
    let ran = run(me.path(), &["call", &others[0].id, &others[0].id], &[], T)?;
    assert_eq!(ran.code, 2, "{ran:?}");
    let ran = run(me.path(), &["call", &others[0].id, &me.id], &[], T)?;
    assert_eq!(ran.code, 2, "{ran:?}");
    // `add` needs a running client hosting a conference.
    let ran = run(me.path(), &["add", &others[0].id], &[], T)?;
    assert_eq!(ran.code, 1, "{ran:?}");
    Ok(())
}
