//! A call that connects but never gets a media path fails: a non-zero exit, the reason
//! (the path failures seen), and a `call_end` with outcome `failed` — never a
//! "completed" call of silence.

use parley_e2e::calls::{answering, loopback, Servers};
use parley_e2e::client::{run, speech};
use parley_e2e::ClientHome;
use std::time::Duration;

#[test]
fn a_relay_only_call_with_no_relay_fails_naming_why() -> anyhow::Result<()> {
    // Two supernodes and no relay at all: a relay-only call has no way to carry audio.
    let lab = Servers::start(0)?;
    let dir = tempfile::tempdir()?;
    let (sn1, sn2) = (lab.sn1.quic.to_string(), lab.sn2.quic.to_string());
    let bob = answering(
        &loopback,
        "bob",
        dir.path(),
        &["--supernode", &sn2, "--relay-only"],
    )?;
    let alice = ClientHome::new("alice")?;
    let heard = dir.path().join("alice.wav");
    let (speech, heard) = (speech(), heard.to_string_lossy().into_owned());
    let ran = run(
        alice.path(),
        &[
            "call",
            &bob.home.id,
            "--supernode",
            &sn1,
            "--relay-only",
            "--json",
            "--input",
            &speech,
            "--output",
            &heard,
        ],
        &[],
        Duration::from_secs(60),
    )?;
    assert_ne!(ran.code, 0, "a call without a media path must not succeed");
    // With --json the error is an `error` event carrying the exit code.
    let error = ran.event("error").expect("an error event");
    let why = error["error"].as_str().unwrap_or("");
    assert!(
        why.contains("no media path") && why.contains("no relay was granted"),
        "the error names the reason: {error}"
    );
    assert_eq!(error["exit_code"], ran.code, "{error}");
    let failed = ran.event("path_failed").expect("a path_failed event");
    assert_eq!(failed["path"], "relay", "{failed}");
    let end = ran.event("call_end").expect("a call_end event");
    assert_eq!(end["outcome"], "failed", "{end}");
    assert!(
        end["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no media path"),
        "{end}"
    );
    Ok(())
}
