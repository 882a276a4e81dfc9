//! Call history: one JSON line per call in `history.jsonl` in the home directory —
//! who, when, which direction, how long, how it ended and on which path.

use crate::home::Home;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;

/// Which way a call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// One call, as `parley history --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The other party's id.
    pub peer: String,
    /// Their display name (the contact name if they are a contact), or empty.
    pub display_name: String,
    /// When the call started ringing: Unix time in milliseconds.
    pub started_ms: u64,
    pub direction: Direction,
    /// How long the two talked (0 when it never connected), in seconds.
    pub duration_s: f64,
    /// `completed`, `dropped`, `rejected`, `declined`, `busy`, `no_answer`, `missed`, `cancelled`,
    /// `unreachable` or `failed`.
    pub outcome: String,
    /// `direct`, `relay`, or `none`.
    pub path: String,
}

/// Longest history file read back; older lines beyond it are not shown.
pub const MAX_HISTORY_BYTES: u64 = 4 << 20;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Appends one call; a failure is logged, never fatal to the call.
pub fn record(home: &Home, entry: &Entry) {
    let write = || -> Result<()> {
        let path = home.history_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(entry)?)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!("cannot record the call in the history: {e:#}");
    }
}

/// Every call recorded, oldest first; unreadable lines are skipped.
pub fn load(home: &Home) -> Vec<Entry> {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(home.history_path()) else {
        return Vec::new();
    };
    let mut text = String::new();
    if f.take(MAX_HISTORY_BYTES).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A call for people: `2026-11-30 15:04 UTC  ← alice  completed  12.3 s  direct`.
pub fn text(e: &Entry) -> String {
    let arrow = match e.direction {
        Direction::Outgoing => "→",
        Direction::Incoming => "←",
    };
    let who = if e.display_name.is_empty() {
        short(&e.peer)
    } else {
        parley_proto::text::printable(&e.display_name)
    };
    format!(
        "{}  {arrow} {who:<16} {:<11} {:>7.1} s  {}",
        utc(e.started_ms),
        e.outcome,
        e.duration_s,
        e.path
    )
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `YYYY-MM-DD HH:MM UTC` from Unix milliseconds (humantime's RFC 3339, trimmed to minutes).
pub fn utc(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    // Always `YYYY-MM-DDTHH:MM:SSZ` for times after 1970, so the slices are in range.
    let rfc3339 = humantime::format_rfc3339_seconds(at).to_string();
    format!("{} {} UTC", &rfc3339[..10], &rfc3339[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_appends_and_reads_back_skipping_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().to_path_buf())).unwrap();
        assert!(load(&home).is_empty());
        let e = Entry {
            peer: "abc".into(),
            display_name: "bob".into(),
            started_ms: 1_764_514_800_000,
            direction: Direction::Outgoing,
            duration_s: 3.5,
            outcome: "completed".into(),
            path: "direct".into(),
        };
        record(&home, &e);
        std::fs::OpenOptions::new()
            .append(true)
            .open(home.history_path())
            .unwrap()
            .write_all(b"{garbage\n")
            .unwrap();
        record(&home, &e);
        assert_eq!(load(&home), vec![e.clone(), e.clone()]);
        assert!(text(&e).contains("bob"), "{}", text(&e));
    }

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_764_514_800_000), "2025-11-30 15:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
