//! How the client talks to its user: a sentence per event, or a JSON line with `--json`;
//! and the exit codes scripts can rely on.
//!
//! An event can also be forwarded to another process: when a command runs inside the
//! running client (`parley online`) on behalf of a `parley call`, `hangup`, … started
//! elsewhere, its events go down that command's control connection too (see
//! [`crate::control`]), so the command prints them as if it had run them itself.

use serde_json::{json, Value};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc::UnboundedSender;

/// Exit code: the command did what was asked.
pub const EXIT_OK: i32 = 0;
/// Exit code: anything else went wrong (network, files, devices, a call that failed).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the command line was wrong (clap uses the same code for its own errors).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: nobody with that id (or contact name) is online or known.
pub const EXIT_NOT_FOUND: i32 = 3;
/// Exit code: the call did not connect: rejected, busy, no answer.
pub const EXIT_NOT_CONNECTED: i32 = 4;

/// A command's error with the exit code it maps to. Anything else is [`EXIT_FAILED`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    /// A usage error: a bad argument found before anything went on the network.
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
        .into()
    }

    /// A not-found error (an unknown contact name, an id nobody uses).
    pub fn not_found(message: impl Into<String>) -> anyhow::Error {
        Failure {
            code: EXIT_NOT_FOUND,
            message: message.into(),
        }
        .into()
    }
}

/// The exit code an error maps to.
pub fn exit_code_of(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<Failure>()
        .map(|f| f.code)
        .unwrap_or(EXIT_FAILED)
}

/// Where forwarded events go: the control connection of the command that asked. A slot
/// lives as long as the program (it is leaked, a few dozen bytes per forwarded command)
/// so that [`Printer`] stays `Copy`; emptying it ends forwarding.
pub type ForwardSlot = Mutex<Option<UnboundedSender<Value>>>;

/// What a [`Printer`] prints on this process's stdout/stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// JSON lines (`--json`).
    Json,
    /// Sentences for people; `stats` as a status line, updated in place on a terminal.
    Text,
    /// Nothing: a command run on behalf of another process, which prints it itself (a
    /// running client sharing a terminal with its commands would say everything twice).
    Quiet,
}

/// Prints events as sentences or JSON lines, and forwards them.
#[derive(Clone, Copy)]
pub struct Printer {
    /// Always true: events are produced as data (the call's `stats` too) and this
    /// printer decides how they look. Kept as a field for the media loop, which asks.
    pub json: bool,
    /// Also forward each event (with its sentence under `"text"`) here.
    pub forward: Option<&'static ForwardSlot>,
    pub local: Local,
}

/// Whether a status line is on the terminal (to be cleared before the next line).
static STATUS_SHOWN: AtomicBool = AtomicBool::new(false);

fn clear_status() {
    if STATUS_SHOWN.swap(false, Ordering::SeqCst) {
        eprint!("\r\x1b[2K");
    }
}

/// The one-line live view of a call from its `stats` (or `call_end`) event:
/// `[  3.0s] path direct | rtt 0.42 ms | loss 0.0 % | jitter 1.2 ms | 32.0 kbit/s`.
pub fn stats_text(v: &Value) -> String {
    format!(
        "[{:>5.1}s] path {} | rtt {} | loss {:.1} % | jitter {:.1} ms | {:.1} kbit/s",
        v["duration_s"].as_f64().unwrap_or_default(),
        v["path"].as_str().unwrap_or("-"),
        v["rtt_ms"]
            .as_f64()
            .map(|r| format!("{r:.2} ms"))
            .unwrap_or_else(|| "-".into()),
        v["loss_percent"].as_f64().unwrap_or_default(),
        v["jitter_ms"].as_f64().unwrap_or_default(),
        v["bitrate_bps"].as_f64().unwrap_or_default() / 1000.0,
    )
}

impl Printer {
    /// Prints to this process's stdout only: JSON lines or sentences.
    pub fn local(json: bool) -> Printer {
        Printer {
            json: true,
            forward: None,
            local: if json { Local::Json } else { Local::Text },
        }
    }

    /// Whether this process prints JSON lines.
    pub fn is_json(&self) -> bool {
        self.local == Local::Json
    }

    /// Like `self`, and forwarding every event to `tx`. Returns the slot to empty when
    /// the command is done.
    pub fn forwarding(self, tx: UnboundedSender<Value>) -> (Printer, &'static ForwardSlot) {
        let slot: &'static ForwardSlot = Box::leak(Box::new(Mutex::new(Some(tx))));
        (
            Printer {
                forward: Some(slot),
                ..self
            },
            slot,
        )
    }

    /// Like [`forwarding`](Self::forwarding), printing locally only JSON lines.
    pub fn forwarding_quietly(self, tx: UnboundedSender<Value>) -> (Printer, &'static ForwardSlot) {
        let (p, slot) = self.forwarding(tx);
        let local = if p.local == Local::Json {
            Local::Json
        } else {
            Local::Quiet
        };
        (Printer { local, ..p }, slot)
    }

    /// One event: `fields` (a JSON object) for programs, `text` for people.
    pub fn event(&self, event: &str, fields: Value, text: impl AsRef<str>) {
        let mut v = json!({ "event": event });
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            obj.extend(extra.clone());
        }
        match self.local {
            Local::Json => println!("{v}"),
            Local::Text if event == "stats" => {
                let line = stats_text(&v);
                if std::io::stderr().is_terminal() {
                    eprint!("\r\x1b[2K{line}");
                    STATUS_SHOWN.store(true, Ordering::SeqCst);
                } else {
                    eprintln!("{line}");
                }
            }
            Local::Text if !text.as_ref().is_empty() => {
                clear_status();
                println!("{}", text.as_ref());
            }
            _ => {}
        }
        if let Some(slot) = self.forward {
            if let Some(tx) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("text".into(), Value::String(text.as_ref().to_string()));
                }
                let _ = tx.send(v);
            }
        }
    }

    /// An error, said once: a sentence on stderr, or an `error` JSON event on stdout
    /// (with its `exit_code`) under `--json`.
    pub fn error(&self, message: &str, exit_code: i32) {
        match self.local {
            Local::Json => println!(
                "{}",
                json!({"event": "error", "error": message, "exit_code": exit_code})
            ),
            Local::Text => {
                clear_status();
                eprintln!("error: {message}");
            }
            Local::Quiet => {}
        }
        if let Some(slot) = self.forward {
            if let Some(tx) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = tx.send(
                    json!({"event": "error", "error": message, "exit_code": exit_code, "text": ""}),
                );
            }
        }
    }

    /// A warning for people (stderr), and a `warning` event under `--json`.
    pub fn warning(&self, message: &str) {
        match self.local {
            Local::Json => println!("{}", json!({"event": "warning", "warning": message})),
            Local::Text => {
                clear_status();
                eprintln!("warning: {message}");
            }
            Local::Quiet => {}
        }
        if let Some(slot) = self.forward {
            if let Some(tx) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = tx.send(json!({"event": "warning", "warning": message, "text": ""}));
            }
        }
    }
}
