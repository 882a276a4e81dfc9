//! How the client talks to its user: a sentence per event, or a JSON line with `--json`;
//! and the exit codes scripts can rely on.
//!
//! An event can also be forwarded to another process: when a command runs inside the
//! running client (`parley online`) on behalf of a `parley call`, `hangup`, … started
//! elsewhere, its events go down that command's control connection too (see
//! [`crate::control`]), so the command prints them as if it had run them itself.

use serde_json::{json, Value};
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

/// Prints events as sentences or JSON lines.
#[derive(Clone, Copy)]
pub struct Printer {
    pub json: bool,
    /// Also forward each event (with its sentence under `"text"`) here.
    pub forward: Option<&'static ForwardSlot>,
}

impl Printer {
    /// Prints to this process's stdout only.
    pub fn local(json: bool) -> Printer {
        Printer {
            json,
            forward: None,
        }
    }

    /// Like `self`, and forwarding every event to `tx`. Returns the slot to empty when
    /// the command is done.
    pub fn forwarding(self, tx: UnboundedSender<Value>) -> (Printer, &'static ForwardSlot) {
        let slot: &'static ForwardSlot = Box::leak(Box::new(Mutex::new(Some(tx))));
        (
            Printer {
                json: self.json,
                forward: Some(slot),
            },
            slot,
        )
    }

    /// One event: `fields` (a JSON object) for programs, `text` for people.
    pub fn event(&self, event: &str, fields: Value, text: impl AsRef<str>) {
        let mut v = json!({ "event": event });
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            obj.extend(extra.clone());
        }
        if self.json {
            println!("{v}");
        } else if !text.as_ref().is_empty() {
            println!("{}", text.as_ref());
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
        if self.json {
            println!(
                "{}",
                json!({"event": "error", "error": message, "exit_code": exit_code})
            );
        } else {
            eprintln!("error: {message}");
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
        if self.json {
            println!("{}", json!({"event": "warning", "warning": message}));
        } else {
            eprintln!("warning: {message}");
        }
        if let Some(slot) = self.forward {
            if let Some(tx) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = tx.send(json!({"event": "warning", "warning": message, "text": ""}));
            }
        }
    }
}
