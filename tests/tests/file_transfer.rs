//! File transfer between real clients (issue 17): `parley send` to running clients
//! with `--accept-files`, on loopback. A 64 MiB random file reaches two contacts
//! intact; a receiver killed mid-transfer and started again resumes from the chunks it
//! had verified; hostile file names and clients that do not accept files are refused
//! with nothing written; a recipient serving corrupted chunks is dropped by the other
//! and the file still arrives.

use parley_e2e::calls::Servers;
use parley_e2e::client::{online, run, Ran};
use parley_e2e::{ClientHome, Proc};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHUNK: u64 = 256 * 1024;
const T: Duration = Duration::from_secs(60);

fn sha256_hex(path: &Path) -> String {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A file of `len` random bytes named `name` in `dir`, and its SHA-256.
fn random_file(dir: &Path, name: &str, len: usize) -> (PathBuf, String) {
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    let sha = sha256_hex(&path);
    (path, sha)
}

fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// Waits for `proc`'s event `name`.
fn event(proc: &mut Proc, name: &str, timeout: Duration) -> Value {
    let pat = format!("\"event\":\"{name}\"");
    json_line(&proc.wait_for(timeout, |l| l.contains(&pat)).unwrap())
}

/// `parley online --accept-files DIR` (DIR made here), attached to `sn`.
fn receiver(name: &str, home: &ClientHome, sn: &str, dir: &Path, env: &[(&str, &str)]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let dir = dir.to_str().unwrap();
    online(name, home, &["--supernode", sn, "--accept-files", dir], env).unwrap()
}

fn send(from: &ClientHome, file: &Path, to: &[&str], extra: &[&str]) -> Ran {
    let mut args = vec!["send", file.to_str().unwrap()];
    args.extend_from_slice(to);
    args.extend_from_slice(extra);
    args.push("--json");
    run(from.path(), &args, &[], T).unwrap()
}

/// Servers (with `relays` relays), a temporary directory, and client homes by name.
struct Lab {
    _servers: Servers,
    sn1: String,
    sn2: String,
    tmp: tempfile::TempDir,
    homes: Vec<ClientHome>,
}

/// The lab's people are each other's contacts (files are accepted only from contacts).
fn lab(relays: usize, names: &[&str]) -> Lab {
    let servers = Servers::start(relays).unwrap();
    let homes: Vec<ClientHome> = names.iter().map(|n| ClientHome::new(n).unwrap()).collect();
    for (i, home) in homes.iter().enumerate() {
        for (j, other) in homes.iter().enumerate() {
            if i != j {
                let args = ["contact", "add", names[j], other.id.as_str()];
                let added = run(home.path(), &args, &[], T).unwrap();
                assert_eq!(added.code, 0, "{added:?}");
            }
        }
    }
    Lab {
        sn1: servers.sn1.quic.to_string(),
        sn2: servers.sn2.quic.to_string(),
        _servers: servers,
        tmp: tempfile::tempdir().unwrap(),
        homes,
    }
}

/// Alice sending, bob receiving into `tmp/bob` (attached to sn1).
fn alice_to_bob(relays: usize) -> (Lab, Proc, PathBuf) {
    let lab = lab(relays, &["alice", "bob"]);
    let bob_dir = lab.tmp.path().join("bob");
    let bob_proc = receiver("bob", &lab.homes[1], &lab.sn1, &bob_dir, &[]);
    (lab, bob_proc, bob_dir)
}

#[test]
fn a_64_mib_file_reaches_two_contacts_intact() {
    let lab = lab(0, &["alice", "bob", "carol"]);
    let (sn1, sn2, tmp) = (&lab.sn1, &lab.sn2, &lab.tmp);
    let [alice, bob, carol] = &lab.homes[..] else {
        unreachable!()
    };
    let (bob_dir, carol_dir) = (tmp.path().join("bob"), tmp.path().join("carol"));
    let mut bob_proc = receiver("bob", bob, sn1, &bob_dir, &[]);
    let mut carol_proc = receiver("carol", carol, sn2, &carol_dir, &[]);
    let (file, sha) = random_file(tmp.path(), "big.bin", 64 << 20);
    let started = Instant::now();
    let sent = send(alice, &file, &["bob", "carol"], &["--supernode", sn1]);
    assert_eq!(sent.code, 0, "{sent:?}");
    let done = sent.event("transfer_done").unwrap();
    assert_eq!(done["size"], 64 << 20);
    // `send` returns once every recipient holds the verified file: it is in place.
    for dir in [&bob_dir, &carol_dir] {
        assert_eq!(
            sha256_hex(&dir.join("big.bin")),
            sha,
            "in {}",
            dir.display()
        );
    }
    eprintln!(
        "64 MiB to two recipients: {:.1} s, sender uploaded {:.2}x the file",
        started.elapsed().as_secs_f64(),
        done["upload_ratio"].as_f64().unwrap()
    );
    for (proc, dir) in [(&mut bob_proc, &bob_dir), (&mut carol_proc, &carol_dir)] {
        let got = event(proc, "file_received", T);
        assert_eq!(got["sha256"], sha.as_str(), "{got}");
        assert_eq!(got["name"], "big.bin");
        let path = dir.join("big.bin");
        assert_eq!(got["path"], path.to_str().unwrap());
        assert_eq!(sha256_hex(&path), sha);
        // Nothing else is left in the directory (no .part, no resume file).
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    }
}

#[test]
fn a_killed_receiver_resumes_without_downloading_its_verified_chunks_again() {
    let (lab, mut bob_proc, bob_dir) = alice_to_bob(0);
    let (sn1, tmp) = (&lab.sn1, &lab.tmp);
    let [alice, bob] = &lab.homes[..] else {
        unreachable!()
    };
    let size = 64u64 << 20;
    let (file, sha) = random_file(tmp.path(), "big.bin", size as usize);
    let sender = {
        let args = [
            "--home",
            alice.path(),
            "send",
            file.to_str().unwrap(),
            bob.id.as_str(),
            "--supernode",
            sn1,
            "--json",
        ];
        Proc::spawn("alice", "parley", &args).unwrap()
    };
    // Kill bob as soon as his resume file says he holds verified chunks (it is
    // written every 8 chunks), long before the 256 chunks are all there.
    let resume = bob_dir.join(".big.bin.parley-resume");
    let deadline = Instant::now() + T;
    while !resume.exists() {
        assert!(Instant::now() < deadline, "no resume file in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    bob_proc.kill();
    assert!(
        !bob_dir.join("big.bin").exists(),
        "bob finished before he was killed: the test proves nothing"
    );
    let mut alice_proc = sender;

    // Started again, bob is offered the file again and resumes from what he verified.
    let mut bob_proc = receiver("bob-again", bob, sn1, &bob_dir, &[]);
    let receiving = event(&mut bob_proc, "transfer_receiving", T);
    let resumed = receiving["resumed_chunks"].as_u64().unwrap();
    assert!(resumed >= 8, "{receiving}");
    let got = event(&mut bob_proc, "file_received", T);
    assert_eq!(got["sha256"], sha.as_str(), "{got}");
    assert_eq!(got["resumed_chunks"], resumed);
    // Only what was missing came over the network again (plus at most a few end-game
    // duplicates).
    let downloaded = got["downloaded"].as_u64().unwrap();
    let missing = size - resumed * CHUNK;
    assert!(
        downloaded <= missing + 4 * CHUNK,
        "downloaded {downloaded} bytes again; {missing} were missing"
    );
    assert_eq!(sha256_hex(&bob_dir.join("big.bin")), sha);
    let done = event(&mut alice_proc, "transfer_done", T);
    assert_eq!(done["size"], size);
    assert!(alice_proc.wait_exit(T).unwrap().success());
}

#[test]
fn hostile_names_and_clients_not_accepting_files_are_refused() {
    let lab = lab(0, &["alice", "bob", "carol"]);
    let (sn1, tmp) = (&lab.sn1, &lab.tmp);
    let [alice, bob, carol] = &lab.homes[..] else {
        unreachable!()
    };
    let inbox = tmp.path().join("inbox");
    let mut bob_proc = receiver("bob", bob, sn1, &inbox, &[]);
    let mut carol_proc = online("carol", carol, &["--supernode", sn1], &[]).unwrap();
    let (file, _) = random_file(tmp.path(), "note.txt", 1000);

    for hostile in ["../x", "/tmp/x", "NUL.txt"] {
        let sent = send(
            alice,
            &file,
            &[&bob.id],
            &[
                "--supernode",
                sn1,
                "--offer-name",
                hostile,
                "--retry-for",
                "5",
            ],
        );
        assert_eq!(sent.code, 1, "{sent:?}");
        let failed = sent.event("transfer_failed").unwrap();
        assert_eq!(failed["failed"][0]["id"], bob.id.as_str(), "{failed}");
        assert!(sent.stdout.contains("not delivered to"), "{sent:?}");
        let refused = event(&mut bob_proc, "transfer_refused", T);
        let reason = refused["reason"].as_str().unwrap();
        assert!(reason.contains("file name refused"), "{refused}");
        // Consume it, so the next round waits for its own refusal.
        bob_proc
            .wait_for(T, |l| l.contains("transfer_refused") && l.contains(reason))
            .unwrap();
    }
    // Nothing was written: not in the inbox, not next to it.
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);
    let mut beside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["inbox", "note.txt"]);

    // A client without --accept-files refuses, and says why.
    let sent = send(
        alice,
        &file,
        &[&carol.id],
        &["--supernode", sn1, "--retry-for", "5"],
    );
    assert_eq!(sent.code, 1, "{sent:?}");
    let refused = event(&mut carol_proc, "transfer_refused", T);
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("does not accept files"),
        "{refused}"
    );

    // Someone who is not bob's contact is refused, and nothing is written.
    let mallory = ClientHome::new("mallory").unwrap();
    let sent = send(
        &mallory,
        &file,
        &[&bob.id],
        &["--supernode", sn1, "--retry-for", "5"],
    );
    assert_eq!(sent.code, 1, "{sent:?}");
    bob_proc
        .wait_for(T, |l| {
            l.contains("transfer_refused") && l.contains("not one of your contacts")
        })
        .unwrap();
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);

    // A local file whose name receivers would refuse is refused before going online.
    let bad = tmp.path().join("CON.txt");
    std::fs::write(&bad, b"x").unwrap();
    let sent = send(alice, &bad, &[&bob.id], &["--supernode", sn1]);
    assert_eq!(sent.code, 2, "{sent:?}");
    assert!(sent.stdout.contains("cannot send a file named"), "{sent:?}");
    assert!(!sent.stdout.contains("\"online\""), "{sent:?}");
}

#[test]
fn a_recipient_serving_corrupted_chunks_is_dropped_and_the_file_still_arrives() {
    let lab = lab(0, &["alice", "bob", "carol"]);
    let (sn1, tmp) = (&lab.sn1, &lab.tmp);
    let [alice, bob, carol] = &lab.homes[..] else {
        unreachable!()
    };
    let (bob_dir, carol_dir) = (tmp.path().join("bob"), tmp.path().join("carol"));
    // Bob flips a byte of every chunk he serves (a test hook).
    let corrupt = [("PARLEY_TEST_CORRUPT_PIECES", "1")];
    let _bob_proc = receiver("bob", bob, sn1, &bob_dir, &corrupt);
    let mut carol_proc = receiver("carol", carol, sn1, &carol_dir, &[]);
    let (file, sha) = random_file(tmp.path(), "data.bin", 16 << 20);

    let sent = send(alice, &file, &[&bob.id, &carol.id], &["--supernode", sn1]);
    assert_eq!(sent.code, 0, "{sent:?}");
    let dropped = event(&mut carol_proc, "transfer_peer_dropped", T);
    assert_eq!(dropped["peer"], bob.id.as_str(), "{dropped}");
    assert!(
        dropped["reason"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{dropped}"
    );
    let got = event(&mut carol_proc, "file_received", T);
    assert_eq!(got["sha256"], sha.as_str());
    assert_eq!(sha256_hex(&carol_dir.join("data.bin")), sha);
    assert_eq!(sha256_hex(&bob_dir.join("data.bin")), sha);
}

#[test]
fn a_2_mib_file_arrives_intact_through_a_relay_with_default_settings_and_shows_in_status() {
    let lab = lab(1, &["alice", "bob"]);
    let (sn1, sn2, tmp) = (&lab.sn1, &lab.sn2, &lab.tmp);
    let [alice, bob] = &lab.homes[..] else {
        unreachable!()
    };
    let bob_dir = tmp.path().join("bob");
    let mut bob_proc = receiver("bob", bob, sn2, &bob_dir, &[]);
    let (file, sha) = random_file(tmp.path(), "photo.jpg", 2 << 20);
    let mut args = vec!["send", file.to_str().unwrap(), bob.id.as_str()];
    args.extend(["--supernode", sn1, "--relay-only", "--json"]);
    let started = Instant::now();
    let home = alice.path().to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let sender = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&home, &args, &[], Duration::from_secs(120)).unwrap()
    });
    // While it runs (at most the relay's 64 kB/s), bob's `status` lists the transfer.
    event(&mut bob_proc, "transfer_progress", T);
    let status = run(bob.path(), &["status", "--json"], &[], T).unwrap();
    let transfers = &status.event("status").unwrap()["transfers"];
    assert_eq!(transfers[0]["name"], "photo.jpg", "{status:?}");
    assert_eq!(transfers[0]["direction"], "receive", "{status:?}");
    let sent = sender.join().unwrap();
    assert_eq!(sent.code, 0, "{sent:?}");
    eprintln!(
        "2 MiB through the relay in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let got = event(&mut bob_proc, "file_received", T);
    assert_eq!(got["sha256"], sha.as_str(), "{got}");
    assert_eq!(sha256_hex(&bob_dir.join("photo.jpg")), sha);
}

#[test]
fn a_recipient_the_sender_cannot_reach_directly_gets_the_file_through_the_relay() {
    let (lab, mut bob_proc, bob_dir) = alice_to_bob(1);
    let (sn1, tmp) = (&lab.sn1, &lab.tmp);
    let [alice, bob] = &lab.homes[..] else {
        unreachable!()
    };
    let (file, sha) = random_file(tmp.path(), "small.bin", 300_000);
    // Every direct dial fails (a test hook): the next offer asks for the relay.
    let args = ["send", file.to_str().unwrap(), bob.id.as_str()];
    let args = [&args[..], &["--supernode", sn1, "--json"]].concat();
    let sent = run(alice.path(), &args, &[("PARLEY_TEST_NO_DIRECT", "1")], T).unwrap();
    assert_eq!(sent.code, 0, "{sent:?}");
    let got = event(&mut bob_proc, "file_received", T);
    assert_eq!(got["sha256"], sha.as_str(), "{got}");
    // Offered directly first (the dial failed), then through the relay.
    let first = event(&mut bob_proc, "transfer_incoming", T);
    assert_eq!(first["relayed"], false, "{first}");
    bob_proc
        .wait_for(T, |l| {
            l.contains("transfer_incoming") && l.contains("\"relayed\":true")
        })
        .unwrap();
    assert_eq!(sha256_hex(&bob_dir.join("small.bin")), sha);
}

#[test]
fn send_goes_through_the_running_client_when_there_is_one() {
    let (lab, mut bob_proc, bob_dir) = alice_to_bob(0);
    let (sn1, tmp) = (&lab.sn1, &lab.tmp);
    let [alice, bob] = &lab.homes[..] else {
        unreachable!()
    };
    let mut alice_proc = online("alice", alice, &["--supernode", sn1], &[]).unwrap();
    let (file, sha) = random_file(tmp.path(), "notes.txt", 700_000);
    // No --supernode: the running client does it (a short-lived session would need one).
    let sent = send(alice, &file, &[&bob.id], &[]);
    assert_eq!(sent.code, 0, "{sent:?}");
    assert!(sent.event("transfer_done").is_some(), "{sent:?}");
    assert!(!sent.stdout.contains("\"online\""), "{sent:?}");
    // The running client did it: the command's events came from there.
    event(&mut alice_proc, "transfer_done", T);
    let got = event(&mut bob_proc, "file_received", T);
    assert_eq!(got["sha256"], sha.as_str(), "{got}");
    assert_eq!(sha256_hex(&bob_dir.join("notes.txt")), sha);
}

/// A recipient that already holds the file (the same send twice) tells the sender so
/// at once: the second `send` ends with exit 0 and no second copy is written.
#[test]
fn sending_a_file_the_recipient_already_has_completes_at_once() {
    let (lab, mut bob_proc, bob_dir) = alice_to_bob(0);
    let [alice, bob] = &lab.homes[..] else {
        unreachable!()
    };
    let (file, sha) = random_file(lab.tmp.path(), "again.txt", 300_000);
    for round in 0..2 {
        let sent = send(alice, &file, &[&bob.id], &["--supernode", &lab.sn1]);
        assert_eq!(sent.code, 0, "round {round}: {sent:?}");
        let got = event(&mut bob_proc, "file_received", T);
        assert_eq!(got["sha256"], sha.as_str(), "{got}");
    }
    let names: Vec<_> = std::fs::read_dir(&bob_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["again.txt".to_string()], "one copy only");
}
