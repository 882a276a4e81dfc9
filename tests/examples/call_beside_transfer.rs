//! A call beside a file transfer on a slow uplink (issue 17: "a call's audio always
//! wins"). In the NAT lab, alice sits behind a router whose uplink is a token bucket
//! (`--kbit`, default 2000 kbit/s, with `--buffer-ms` of queue, default 300: a home
//! router's deep buffer). Her running client calls bob (direct path) with speech for
//! `--secs` seconds; bob's running client answers and accepts files. Three runs, each in
//! a fresh lab:
//!
//! 1. `alone`: the call only;
//! 2. `paced`: alice sends bob a large file through her running client, started a few
//!    seconds before the call (the transfer is paced by the call's RTT while the call
//!    runs: `parley_proto::transfer::call_yield`);
//! 3. `unpaced`: the same with pacing off (`PARLEY_TRANSFER_YIELD=0` on both clients).
//!
//! For each: wideband PESQ of what bob heard (alice's speech crossed the limited uplink),
//! the call's RTT, jitter buffer and loss from alice's and bob's `call_end`, and the bytes
//! bob received of the file during the call, one row per run (`--runs N` each). Last
//! line, the median run of each mode by PESQ:
//! `RESULT pesq_alone=A pesq_paced=P pesq_unpaced=U transfer_kib_paced=K transfer_kib_unpaced=L runs=N`.
//!
//! Run as root (namespaces, nftables, tc), binaries built first:
//! `cargo build --workspace --bins && cargo run -p parley-e2e --example call_beside_transfer`

use anyhow::{bail, Context, Result};
use parley_e2e::lab_supernodes::LabSupernodes;
use parley_e2e::natlab::{Host, NatKind, NatLab};
use parley_e2e::{ClientHome, Proc};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

struct Args {
    kbit: u32,
    buffer_ms: u32,
    secs: u32,
    runs: u32,
}

fn args() -> Result<Args> {
    let mut a = Args {
        kbit: 2000,
        buffer_ms: 300,
        secs: 15,
        runs: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> Result<u32> {
            it.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} takes a whole number"))
        };
        match flag.as_str() {
            "--kbit" => a.kbit = value()?,
            "--buffer-ms" => a.buffer_ms = value()?,
            "--secs" => a.secs = value()?,
            "--runs" => a.runs = value()?.max(1),
            "-h" | "--help" => {
                println!(
                    "call_beside_transfer [--kbit 2000] [--buffer-ms 300] [--secs 15] [--runs 1]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other} (try --help)"),
        }
    }
    Ok(a)
}

/// What one run measured.
struct Run {
    pesq: f64,
    alice: Value,
    bob: Value,
    /// File bytes bob received while the call ran (0 without a transfer).
    file_bytes: u64,
}

fn event(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or(Value::Null)
}

fn online(
    host: &Host,
    name: &str,
    home: &ClientHome,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Proc> {
    let mut args = vec!["--home", home.path(), "online", "--json"];
    args.extend_from_slice(extra);
    let mut cmd = host.command(parley_e2e::bin("parley")?, &args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn_command(name, cmd)?;
    p.wait_for(Duration::from_secs(30), |l| {
        l.contains("\"event\":\"published\"")
    })?;
    Ok(p)
}

fn run_once(a: &Args, mode: &str, dir: &Path) -> Result<Run> {
    let mut lab = NatLab::new()?;
    let servers = LabSupernodes::start(&mut lab)?;
    let [a1, a2] = servers.addrs;
    let (s1, s2) = (a1.to_string(), a2.to_string());
    let ha = lab.client("alice", NatKind::FullCone, 0.0)?;
    let hb = lab.client("bob", NatKind::FullCone, 0.0)?;
    lab.set_uplink(&ha, a.kbit, a.buffer_ms)?;
    let (alice, bob) = (ClientHome::new("alice")?, ClientHome::new("bob")?);
    // Bob takes files from contacts only.
    let added = std::process::Command::new(parley_e2e::bin("parley")?)
        .args(["--home", bob.path(), "contact", "add", "alice", &alice.id])
        .output()?;
    if !added.status.success() {
        bail!("contact add: {}", String::from_utf8_lossy(&added.stderr));
    }
    let speech = parley_audio::speech_fixture();
    let speech = speech.to_string_lossy().into_owned();
    let files = dir.join(format!("{mode}-files"));
    std::fs::create_dir_all(&files)?;
    let heard = dir.join(format!("{mode}-bob.wav"));
    let (files_s, heard_s) = (files.to_string_lossy(), heard.to_string_lossy());
    let env: &[(&str, &str)] = if mode == "unpaced" {
        &[("PARLEY_TRANSFER_YIELD", "0")]
    } else {
        &[]
    };
    let mut bob_p = online(
        &hb,
        "bob",
        &bob,
        &[
            "--supernode",
            &s2,
            "--supernode",
            &s1,
            "--auto-answer",
            "--input",
            &speech,
            "--output",
            &heard_s,
            "--accept-files",
            &files_s,
        ],
        env,
    )?;
    let mut alice_p = online(
        &ha,
        "alice",
        &alice,
        &["--supernode", &s1, "--supernode", &s2],
        env,
    )?;
    let mut sender = None;
    if mode != "alone" {
        let big = dir.join(format!("{mode}-big.bin"));
        let data: Vec<u8> = (0..(64u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&big, data)?;
        let big_s = big.to_string_lossy().into_owned();
        sender = Some(ha.spawn_bin(
            "send",
            "parley",
            ["--home", alice.path(), "send", &big_s, &bob.id, "--json"],
        )?);
        // The transfer is under way (and has filled the uplink's queue) before the call.
        bob_p.wait_for(Duration::from_secs(30), |l| {
            l.contains("\"event\":\"transfer_progress\"")
        })?;
        std::thread::sleep(Duration::from_secs(3));
    }
    let secs = a.secs.to_string();
    let mut call = ha.spawn_bin(
        "call",
        "parley",
        [
            "--home",
            alice.path(),
            "call",
            &bob.id,
            "--json",
            "--input",
            &speech,
            "--duration",
            &secs,
        ],
    )?;
    let alice_end = call
        .wait_for(Duration::from_secs(u64::from(a.secs) + 60), |l| {
            l.contains("\"event\":\"call_end\"")
        })
        .map(|l| event(&l))?;
    // Bob's lines from the start: file bytes held when his call connected and ended.
    let (mut file_bytes, mut at_connect, mut bob_end) = (0u64, None, Value::Null);
    while bob_end.is_null() {
        let line = bob_p.wait_for_new(Duration::from_secs(30), |_| true)?;
        let v = event(&line);
        match v["event"].as_str() {
            Some("call_end") => bob_end = v,
            Some("connected") => at_connect = Some(file_bytes),
            Some("transfer_progress") => file_bytes = v["bytes"].as_u64().unwrap_or(file_bytes),
            _ => {}
        }
    }
    let file_bytes = file_bytes - at_connect.unwrap_or(file_bytes);
    drop(sender);
    alice_p.kill();
    let fixture = parley_audio::speech_fixture();
    let (pesq, _) = parley_bench::score::pesq_of_recording(&fixture, &heard, 2.0)?;
    drop(servers);
    Ok(Run {
        pesq,
        alice: alice_end,
        bob: bob_end,
        file_bytes,
    })
}

fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    println!(
        "uplink {} kbit/s with {} ms of buffer; call {} s; bob hears alice across the uplink",
        a.kbit, a.buffer_ms, a.secs
    );
    println!("| run | PESQ-WB (bob heard) | RTT ms | bob's jitter buffer ms | bob's loss % | file KiB during the call |");
    println!("|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for mode in ["alone", "paced", "unpaced"] {
        let mut runs = Vec::new();
        for _ in 0..a.runs {
            let r = run_once(&a, mode, dir.path())?;
            println!(
                "| {mode} | {:.2} | {} | {} | {} | {} |",
                r.pesq,
                r.alice["rtt_ms"],
                r.bob["jitter_buffer_ms"],
                r.bob["loss_percent"],
                r.file_bytes / 1024
            );
            runs.push(r);
        }
        runs.sort_by(|x, y| x.pesq.total_cmp(&y.pesq));
        let mid = runs.swap_remove(runs.len() / 2);
        medians.push(mid);
    }
    println!(
        "RESULT pesq_alone={:.2} pesq_paced={:.2} pesq_unpaced={:.2} transfer_kib_paced={} transfer_kib_unpaced={} runs={}",
        medians[0].pesq,
        medians[1].pesq,
        medians[2].pesq,
        medians[1].file_bytes / 1024,
        medians[2].file_bytes / 1024,
        a.runs
    );
    Ok(())
}
