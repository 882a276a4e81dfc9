//! `parley status` through the running client: who we are, where we are attached, the
//! call (and a conference's participants) and the transfers in progress.

use super::{lock, Shared};
use crate::output::Printer;
use serde_json::{json, Value};

pub(super) fn status(shared: &Shared, out: Printer) {
    let me = shared.session.identity.peer_id();
    let attached: Vec<String> = shared
        .session
        .attachments()
        .iter()
        .map(|l| l.addr.to_string())
        .collect();
    let call = lock(&shared.current).as_ref().map(|c| {
        json!({
            "peer": c.peer.to_string(),
            "display_name": c.label,
            "direction": c.direction,
            "seconds": (c.since.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "state": c.state,
            "stats": c.stats,
            "muted": c.control.muted(),
            "level_in": c.control.levels().0,
            "level_out": c.control.levels().1,
            "participants": c.conference.as_ref().map(|h| h.participants()),
        })
    });
    let mut text = format!(
        "online as {me} ({}), pid {}\nattached to: {}",
        shared.home.display_name(),
        std::process::id(),
        if attached.is_empty() {
            "(none yet)".to_string()
        } else {
            attached.join(", ")
        }
    );
    match &call {
        Some(c) => {
            text += &format!(
                "\nin a call ({}) with {} for {} s{}",
                c["direction"].as_str().unwrap_or_default(),
                parley_proto::text::printable(c["display_name"].as_str().unwrap_or_default()),
                c["seconds"],
                if c["muted"] == true { ", muted" } else { "" }
            );
            for p in c["participants"].as_array().into_iter().flatten() {
                text += &format!(
                    "\n  {} ({}){}",
                    parley_proto::text::printable(p["display_name"].as_str().unwrap_or_default()),
                    p["state"].as_str().unwrap_or_default(),
                    if p["speaking"] == true {
                        ", speaking"
                    } else {
                        ""
                    }
                );
            }
        }
        None => text += "\nno call in progress",
    }
    let serving = lock(&shared.serving).clone();
    if let Some(s) = &serving {
        text += &format!(
            "\nserving others: supernode at {}, relay at {}",
            s["quic"].as_str().unwrap_or_default(),
            s["relay"].as_str().unwrap_or_default()
        );
    }
    let transfers: Vec<Value> = lock(&shared.transfers).values().cloned().collect();
    for t in &transfers {
        text += &format!(
            "\n{} {}: {} of {} bytes",
            if t["direction"] == "send" {
                "sending"
            } else {
                "receiving"
            },
            parley_proto::text::printable(t["name"].as_str().unwrap_or_default()),
            t["bytes"].as_u64().or(t["uploaded"].as_u64()).unwrap_or(0),
            t["size"]
        );
    }
    out.event(
        "status",
        json!({
            "transfers": transfers,
            "online": true,
            "id": me.to_string(),
            "display_name": shared.home.display_name(),
            "pid": std::process::id(),
            "attached": attached,
            "call": call,
            "serving": serving,
        }),
        text,
    );
}
