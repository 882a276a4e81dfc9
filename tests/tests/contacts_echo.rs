//! Contacts and the echo service (issue 14, acceptance 4): `contact add` pins a key and
//! `call NAME` works; a changed key is refused; the running client reports contacts'
//! presence; `online --echo` plays the caller's speech back, recognisably.

use parley_e2e::calls::Servers;
use parley_e2e::client::{online, run, speech};
use parley_e2e::{similarity, ClientHome};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const NO_DEVICES: (&str, &str) = ("PARLEY_NO_AUDIO_DEVICES", "1");

#[test]
fn a_contact_called_by_name_is_the_echo_service_and_it_echoes() -> anyhow::Result<()> {
    let lab = Servers::start(0)?;
    let dir = tempfile::tempdir()?;
    let (sn1, sn2) = (lab.sn1.quic.to_string(), lab.sn2.quic.to_string());
    let (alice, echo) = (ClientHome::new("alice")?, ClientHome::new("echo")?);
    // The echo needs no device and no file.
    let mut echo_proc = online(
        "echo",
        &echo,
        &["--supernode", &sn2, "--echo"],
        &[NO_DEVICES],
    )?;

    let added = run(
        alice.path(),
        &["contact", "add", "Echo", &echo.id, "--json"],
        &[],
        T,
    )?;
    assert_eq!(added.code, 0, "{added:?}");
    // Another key under the same name is refused, loudly.
    let mallory = ClientHome::new("mallory")?;
    let changed = run(
        alice.path(),
        &["contact", "add", "echo", &mallory.id],
        &[],
        T,
    )?;
    assert_eq!(changed.code, 1, "{changed:?}");
    assert!(changed.stderr.contains("KEY CHANGED"), "{changed:?}");

    // No client running: `contacts` looks the contact up once.
    let listed = run(
        alice.path(),
        &["contacts", "--supernode", &sn1, "--json"],
        &[],
        T,
    )?;
    let contact = listed.event("contact").expect("a contact event");
    assert_eq!(contact["name"], "Echo");
    assert_eq!(contact["presence"], "online", "{listed:?}");

    // `call NAME`; the echo plays alice's speech back to her.
    let heard = dir.path().join("heard.wav");
    let call = run(
        alice.path(),
        &[
            "call",
            "echo",
            "--supernode",
            &sn1,
            "--json",
            "--input",
            &speech(),
            "--output",
            heard.to_str().unwrap(),
        ],
        &[],
        T,
    )?;
    assert_eq!(call.code, 0, "{call:?}");
    assert_eq!(call.event("calling").unwrap()["contact"], "Echo");
    assert_eq!(call.event("call_end").unwrap()["outcome"], "completed");
    echo_proc.wait_for(Duration::from_secs(10), |l| {
        l.contains("\"event\":\"call_end\"")
    })?;
    let s = similarity(&parley_audio::speech_fixture(), &heard)?;
    eprintln!(
        "echo: correlation {:.3} at a lag of {} ms",
        s.correlation,
        s.lag_samples / 48
    );
    // 0.89 on an idle machine, 0.56-0.67 at a load average of 15 on 2 cores (two codec
    // passes, two jitter buffers); silence or noise would be near 0.
    assert!(s.correlation >= 0.5, "the echo correlates only {s:?}");
    let history = run(alice.path(), &["history", "--json"], &[], T)?;
    let last = history.events().pop().unwrap();
    assert_eq!(last["display_name"], "Echo");
    assert_eq!(last["outcome"], "completed");

    // A running client keeps the contacts' presence itself.
    let _alice_proc = online("alice", &alice, &["--supernode", &sn1], &[NO_DEVICES])?;
    let mut presence = String::new();
    for _ in 0..50 {
        let listed = run(alice.path(), &["contacts", "--json"], &[], T)?;
        presence = listed.event("contact").unwrap()["presence"]
            .as_str()
            .unwrap()
            .to_string();
        if presence == "online" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(presence, "online");
    Ok(())
}
