//! Acceptance (issue 15, point 5): what an operator installs and runs.
//!
//! - `cargo install --path client|supernode|relay` installs each package's `[[bin]]`
//!   targets: read from `cargo metadata`, they are exactly `parley`, `supernode` and
//!   `relay` (see the relay note in the test).
//! - `--version` names the binary; `supernode id` will not create a key unasked; logs
//!   that do not go to a terminal carry no ANSI colour codes.
//! - The sample configs in `packaging/` are accepted by the binaries, and the systemd
//!   units pass `systemd-analyze verify`.
//!
//! The real `cargo install --locked --path …` into a temporary root is
//! `scripts/install-check.sh`, which `scripts/test.sh` runs after this suite (with `--debug`,
//! sharing the test build; `--release` installs exactly as an operator does).

use anyhow::{Context, Result};
use parley_e2e::bin;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The binary targets of each workspace package, from `cargo metadata`.
fn bins_of(package: &str) -> Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo())
        .output()?;
    anyhow::ensure!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let pkg = meta["packages"]
        .as_array()
        .context("no packages")?
        .iter()
        .find(|p| p["name"] == package)
        .with_context(|| format!("no package {package}"))?;
    let mut bins: Vec<String> = pkg["targets"]
        .as_array()
        .context("no targets")?
        .iter()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    bins.sort();
    Ok(bins)
}

#[test]
fn installs_exactly_the_three_binaries_each_naming_itself() -> Result<()> {
    assert_eq!(bins_of("parley-client")?, ["parley"]);
    assert_eq!(bins_of("parley-supernode")?, ["supernode"]);
    // relay-bench lives in its own package, so installing the relay installs only it.
    assert_eq!(bins_of("parley-relay")?, ["relay"]);
    for name in ["parley", "supernode", "relay"] {
        let out = Command::new(bin(name)?).arg("--version").output()?;
        assert!(out.status.success(), "{name} --version failed");
        let text = String::from_utf8(out.stdout)?;
        assert_eq!(
            text.trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
            "{name} --version"
        );
    }
    Ok(())
}

#[test]
fn supernode_id_creates_a_key_only_when_asked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("typo.key");
    let key_arg = key.to_str().context("utf-8")?;
    let out = Command::new(bin("supernode")?)
        .args(["id", "--key", key_arg])
        .output()?;
    assert!(!out.status.success(), "a missing key is an error");
    assert!(!key.exists(), "no key file was created");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--create"));
    let created = Command::new(bin("supernode")?)
        .args(["id", "--key", key_arg, "--create"])
        .output()?;
    assert!(created.status.success());
    let again = Command::new(bin("supernode")?)
        .args(["id", "--key", key_arg])
        .output()?;
    assert!(again.status.success());
    assert_eq!(created.stdout, again.stdout, "the same id both times");
    assert_eq!(String::from_utf8(again.stdout)?.trim().len(), 58);
    Ok(())
}

/// Starts `bin --config FILE ARGS...` with stderr going to a file (not a terminal),
/// waits for its "listening" log line, stops it, and returns what it logged.
fn run_with_config(name: &str, config: &Path, args: &[&str], dir: &Path) -> Result<String> {
    let log = dir.join(format!("{name}.log"));
    let mut child = Command::new(bin(name)?)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut text = std::fs::read_to_string(&log)?;
    while !text.contains("listening") && std::time::Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(&log)?;
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(text)
}

#[test]
fn sample_configs_start_the_servers_and_logs_to_files_are_plain() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sn_key = dir.path().join("sn.key");
    let sn_key = sn_key.to_str().context("utf-8")?;
    let sample = repo().join("packaging/supernode.toml");
    let over = [
        "--key",
        sn_key,
        "--listen",
        "127.0.0.1:0",
        "--stun-listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
    ];
    let log = run_with_config("supernode", &sample, &over, dir.path())?;
    assert!(log.contains("supernode listening"), "{log}");
    assert!(!log.contains('\x1b'), "ANSI escapes in a log file: {log:?}");

    // The relay's sample names a placeholder for the trusted supernode's id.
    let sn_id = Command::new(bin("supernode")?)
        .args(["id", "--key", sn_key])
        .output()?;
    let sn_id = String::from_utf8(sn_id.stdout)?.trim().to_string();
    let text = std::fs::read_to_string(repo().join("packaging/relay.toml"))?;
    assert!(text.contains("<supernode id>"));
    let relay_cfg = dir.path().join("relay.toml");
    std::fs::write(&relay_cfg, text.replace("<supernode id>", &sn_id))?;
    let relay_key = dir.path().join("relay.key");
    let over = [
        "--key",
        relay_key.to_str().context("utf-8")?,
        "--listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
    ];
    let log = run_with_config("relay", &relay_cfg, &over, dir.path())?;
    assert!(log.contains("relay listening"), "{log}");
    assert!(!log.contains('\x1b'), "ANSI escapes in a log file: {log:?}");
    Ok(())
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() -> Result<()> {
    let Ok(analyze) = which("systemd-analyze") else {
        // scripts/install-deps.sh installs systemd; say so loudly rather than pass.
        panic!("systemd-analyze not found: run scripts/install-deps.sh");
    };
    let dir = tempfile::tempdir()?;
    for (unit, binary) in [
        ("parley-supernode.service", "supernode"),
        ("parley-relay.service", "relay"),
    ] {
        // The units name /usr/local/bin/...; verify checks the executable exists, so
        // point a copy at the freshly built binary.
        let text = std::fs::read_to_string(repo().join("packaging").join(unit))?;
        let installed = format!("/usr/local/bin/{binary} ");
        assert!(text.contains(&installed), "{unit} runs {installed}");
        let built = format!("{} ", bin(binary)?.display());
        let copy = dir.path().join(unit);
        std::fs::write(&copy, text.replace(&installed, &built))?;
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&copy)
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{unit}: {stderr}");
        assert!(
            !stderr.contains(unit),
            "systemd-analyze verify complains about {unit}: {stderr}"
        );
    }
    Ok(())
}

fn which(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .with_context(|| format!("{name} not on PATH"))
}

/// The default `--help` states for `flag` ("Default 100", "Default: relay.key",
/// "[default: 20]"): its first word.
fn help_default(help: &str, flag: &str) -> Option<String> {
    let start = help.find(&format!("{flag} <"))?;
    let rest = &help[start + flag.len()..];
    let para = rest.split("\n      --").next()?;
    let after = para.split_once("efault")?.1;
    let word = after
        .trim_start_matches([':', ' '])
        .split_whitespace()
        .next()?;
    Some(
        word.trim_end_matches(['.', ',', ')', ';', ']'])
            .trim_matches('"')
            .to_string(),
    )
}

/// Every active line of a sample config holds the binary's own default, as its
/// `--help` states it (commented lines are examples; `listen` and `trust` are
/// required and have none; an empty list is "none").
#[test]
fn sample_configs_hold_the_binaries_defaults() -> Result<()> {
    for (name, required) in [
        ("supernode", &["listen"][..]),
        ("relay", &["listen", "trust"]),
    ] {
        let help = Command::new(bin(name)?).arg("--help").output()?;
        let help = String::from_utf8(help.stdout)?;
        let path = repo().join(format!("packaging/{name}.toml"));
        let sample: toml::Table = toml::from_str(&std::fs::read_to_string(&path)?)?;
        for (key, value) in &sample {
            if required.contains(&key.as_str()) {
                continue;
            }
            if value.as_array().is_some_and(|a| a.is_empty()) {
                continue;
            }
            let flag = format!("--{}", key.replace('_', "-"));
            let default = help_default(&help, &flag)
                .with_context(|| format!("{name} --help states no default for {flag}"))?;
            let shown = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(
                shown,
                default,
                "{}: {key} = {value} but {name} --help says the default is {default}",
                path.display()
            );
        }
    }
    Ok(())
}
