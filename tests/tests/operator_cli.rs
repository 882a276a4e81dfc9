//! What an operator or a first-time user meets at the command line (issue 15): errors
//! that say what happened and name the right command.

use anyhow::Result;
use parley_e2e::{bin, parley, ClientHome, Proc, Supernode};
use parley_proto::presence::Contact;
use parley_proto::PeerId;
use std::process::Command;
use std::time::Duration;

/// `parley nat` against supernodes that do not answer (over UDP nor over their TCP
/// fallback) says it could not reach them and exits 1; it never reports "udp-blocked",
/// which needs a TCP fallback to have answered.
#[test]
fn parley_nat_with_unreachable_supernodes_says_so_and_fails() -> Result<()> {
    let home = ClientHome::new("nat")?;
    // Nothing listens on port 9 (discard) on loopback, over UDP or TCP.
    let out = Command::new(bin("parley")?)
        .args([
            "--home",
            home.path(),
            "nat",
            "--json",
            "--supernode",
            "127.0.0.1:9",
            "--supernode",
            "127.0.0.2:9",
            "--supernode",
            "tcp://127.0.0.1:9",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("could not reach"), "{text}");
    assert!(!text.contains("udp-blocked"), "{text}");
    Ok(())
}

/// `supernode id` without a key names the supernode's own command, not the client's.
#[test]
fn supernode_id_without_a_key_names_supernode_id_create() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("sn1.key");
    let out = Command::new(bin("supernode")?)
        .args(["id", "--key", key.to_str().unwrap_or_default()])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("supernode id --create --key"), "{err}");
    assert!(!err.contains("parley id new"), "{err}");
    Ok(())
}

/// The operator guide's metrics table names every reason the relay counts drops and
/// refused joins by.
#[test]
fn the_operator_guide_lists_every_drop_reason() -> Result<()> {
    let guide = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator-guide.md");
    let guide = std::fs::read_to_string(guide)?;
    let row = guide
        .lines()
        .find(|l| l.contains("parley_relay_dropped_datagrams_total{reason}"))
        .unwrap_or_default();
    for reason in parley_proto::relay::DropReason::ALL {
        assert!(
            row.contains(&format!("`{}`", reason.as_str())),
            "docs/operator-guide.md: {reason} missing from {row}"
        );
    }
    let row = guide
        .lines()
        .find(|l| l.contains("parley_relay_refused_joins_total{reason}"))
        .unwrap_or_default();
    for code in parley_proto::relay::RelayRefusalCode::ALL {
        assert!(
            row.contains(&format!("`{}`", code.as_str())),
            "docs/operator-guide.md: {code:?} missing from {row}"
        );
    }
    Ok(())
}

/// `--public-ip` of the other address family than `--listen` is refused before the
/// supernode binds anything (exit 1, the flag named); one of the right family is echoed
/// on the ready line with the overlay position it gives (BEP 42), as others compute it.
#[test]
fn a_public_ip_of_the_other_family_is_refused_and_a_good_one_is_echoed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("sn.key");
    let mut child = Command::new(bin("supernode")?)
        .args(["--listen", "0.0.0.0:0", "--public-ip", "::1", "--key"])
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            child.kill()?;
            anyhow::bail!("still running: --public-ip ::1 with --listen 0.0.0.0 accepted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--public-ip ::1"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
    assert!(!key.exists(), "refused only after creating a key");

    let sn = Supernode::start_with("sn", &[], &["--public-ip", "8.8.8.8"])?;
    assert!(sn.ready.contains(" public_ip=8.8.8.8 "), "{}", sn.ready);
    let contact = Contact {
        id: sn.id.parse::<PeerId>()?,
        addr: std::net::SocketAddr::new("8.8.8.8".parse()?, sn.quic.port()),
    };
    let position = format!(" position={}", contact.node_id());
    assert!(sn.ready.ends_with(&position), "{} vs {position}", sn.ready);
    // Without --public-ip: no public_ip field, the position of the loopback address.
    let sn = Supernode::start("sn2", &[])?;
    assert!(!sn.ready.contains("public_ip="), "{}", sn.ready);
    let contact = Contact {
        id: sn.id.parse::<PeerId>()?,
        addr: sn.quic,
    };
    assert!(sn
        .ready
        .ends_with(&format!(" position={}", contact.node_id())));
    Ok(())
}

/// The second STUN port (RFC 5780 change-port) is the one `--stun-alternate-port`
/// names, and the ready line says where it is (any free port by default in tests,
/// whose STUN port is ephemeral).
#[test]
fn the_second_stun_port_is_the_one_configured() -> Result<()> {
    let free = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let port = free.local_addr()?.port();
    drop(free);
    let sn = Supernode::start_with("sn", &[], &["--stun-alternate-port", &port.to_string()])?;
    let expect = format!(" stun_alternate=127.0.0.1:{port} ");
    assert!(sn.ready.contains(&expect), "{} lacks {expect}", sn.ready);
    let sn = Supernode::start("sn2", &[])?;
    let alt = parley_e2e::ready_field(&sn.ready, "stun_alternate").unwrap_or_default();
    let alt: std::net::SocketAddr = alt.parse()?;
    assert_eq!(alt.ip(), sn.stun.ip());
    assert_ne!(alt.port(), sn.stun.port());
    Ok(())
}

/// The one JSON line `out` printed, which must be an `error` event with exit code 2.
fn usage_error_event(out: &std::process::Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0])?;
    assert_eq!(v["event"], "error", "{v}");
    assert_eq!(v["exit_code"], 2, "{v}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(v["error"].as_str().unwrap_or_default().to_string())
}

/// With `--json` anywhere on the command line, clap's argument errors are `error`
/// events like every other error (stdout, exit 2); without it they stay clap's text
/// on stderr; `--help` and `--version` stay text and exit 0 either way.
#[test]
fn argument_errors_under_json_are_error_events() -> Result<()> {
    let home = tempfile::tempdir()?;
    let home = home.path();
    let e = usage_error_event(&parley(home, &["--json", "online", "--relay-kbps", "100"])?)?;
    assert!(
        e.contains("'--relay-kbps <KBPS>'") && e.contains("512"),
        "{e}"
    );
    let e = usage_error_event(&parley(home, &["online", "--bogus", "--json"])?)?;
    assert!(e.contains("--bogus"), "{e}");
    let e = usage_error_event(&parley(home, &["call", "--json"])?)?;
    assert!(e.contains("<ID_OR_NAME>"), "{e}");

    let out = parley(home, &["online", "--relay-kbps", "100"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: invalid value '100'") && err.contains("--help"),
        "{err}"
    );

    let out = parley(home, &["--json", "--help"])?;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: parley"));
    let out = parley(home, &["--json", "--version"])?;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("parley "));
    Ok(())
}

/// `--relay-kbps` with `--serve never` would be ignored: refused as a usage error
/// (exit 2) before the client goes online, like the CLI's other contradictions.
#[test]
fn relay_kbps_with_serve_never_is_refused() -> Result<()> {
    let home = ClientHome::new("never")?;
    let mut args = vec!["--home", home.path(), "online", "--json"];
    args.extend(["--serve", "never", "--relay-kbps", "1024"]);
    let mut p = Proc::spawn("never", "parley", &args)?;
    let line = p.wait_for(Duration::from_secs(20), |l| l.contains("\"event\""))?;
    assert_eq!(p.wait_exit(Duration::from_secs(20))?.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(
        (&v["event"], &v["exit_code"]),
        (&"error".into(), &2.into()),
        "{v}"
    );
    let e = v["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("--relay-kbps") && e.contains("--serve never"),
        "{e}"
    );
    Ok(())
}
