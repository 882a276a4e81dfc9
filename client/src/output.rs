//! How the client talks to its user: a sentence per event, or a JSON line with `--json`.

use serde_json::{json, Value};

/// Prints events as sentences or JSON lines.
#[derive(Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// One event: `fields` (a JSON object) for programs, `text` for people.
    pub fn event(&self, event: &str, fields: Value, text: impl AsRef<str>) {
        if self.json {
            let mut v = json!({ "event": event });
            if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
                obj.extend(extra.clone());
            }
            println!("{v}");
        } else {
            println!("{}", text.as_ref());
        }
    }
}
