//! `supernode-bench` end to end at a tiny size: 20 real clients attach to a real
//! (debug) `supernode` process, idle, and are looked up. Needs the binaries built
//! (`cargo build --workspace --bins`); `PARLEY_BIN_DIR` points elsewhere.

use parley_sim::capacity::{run, Config};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn supernode() -> PathBuf {
    let dir = match std::env::var_os("PARLEY_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        // Test executables live in target/<profile>/deps; the binaries one level up.
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
            .unwrap_or_default(),
    };
    let path = dir.join("supernode");
    assert!(
        path.exists(),
        "{} not found: build the binaries first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_real_clients_attach_idle_and_are_looked_up() {
    let config = Config {
        supernode: supernode(),
        // Two steps, over three source addresses of 8 clients each.
        steps: vec![10],
        max_clients: 20,
        per_address: 8,
        concurrency: 8,
        settle: Duration::from_millis(200),
        idle: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        lookup_window: Duration::from_secs(1),
        lookup_tasks: 4,
        budget: Duration::from_secs(60),
        min_free_mib: 0,
        max_failed_pct: 0.0,
    };
    let outcome = run(&config, &mut |line| eprintln!("{line}")).await.unwrap();
    let text = outcome.render();
    println!("{text}");
    assert_eq!(outcome.steps.len(), 2, "{text}");
    let last = &outcome.steps[1];
    assert_eq!((last.clients, last.addresses, last.failed), (20, 3, 0));
    assert!(last.passed && last.rss_kib > 0, "{text}");
    let line = text.lines().last().unwrap();
    assert!(
        line.starts_with("RESULT clients=20 rss_per_client_kib="),
        "{line}"
    );
    assert!(field(line, "lookups_per_s=") > 0.0, "{line}");
    assert!(field(line, "idle_cpu_pct=") >= 0.0, "{line}");
    assert_eq!(last.lookups_failed, 0, "{text}");
}
