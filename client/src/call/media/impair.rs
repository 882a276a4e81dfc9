//! The `PARLEY_IMPAIR` diagnostic: a seeded impairment channel between this client's
//! media loop and the network, for testing calls on a bad network without one.
//!
//! `PARLEY_IMPAIR="loss=10,burst=3,jitter=30,seed=7"` (the syntax of
//! [`parley_proto::media::impair::parse_spec`]) makes every outgoing media datagram pass
//! through [`Impairment`]: dropped, delayed on a tokio timer, or sent twice. Only what
//! this client sends is impaired; set it on both clients to impair both directions.
//! Hang-ups are exempt, so that a test call still ends when it should.

use super::super::paths::PathConn;
use crate::output::Printer;
use anyhow::{anyhow, Result};
use parley_net::clock::now;
use parley_proto::media::impair::{parse_spec, Impairment};
use serde_json::json;

/// The environment variable that turns the impairment on.
pub const ENV: &str = "PARLEY_IMPAIR";

/// Sends media datagrams on the current path, through the impairment if one is set.
pub struct Outbox {
    channel: Option<Impairment>,
}

impl Outbox {
    /// Reads [`ENV`]; a malformed spec is an error (a diagnostic that silently does
    /// nothing would make a test pass for the wrong reason).
    pub fn from_env(out: Printer) -> Result<Outbox> {
        let Some(spec) = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty()) else {
            return Ok(Outbox { channel: None });
        };
        let config = parse_spec(&spec).map_err(|e| anyhow!("{ENV}={spec:?}: {e}"))?;
        out.event(
            "impairment",
            json!({ "spec": spec }),
            format!("{ENV}: impairing outgoing media ({spec})"),
        );
        Ok(Outbox {
            channel: Some(Impairment::new(config)),
        })
    }

    /// Sends `datagram` on `conn` now, later, twice or never, as the impairment decides.
    /// A datagram the path refuses (its queue full) is dropped, as the network would.
    pub fn send(&mut self, conn: &PathConn, datagram: Vec<u8>) {
        let datagram = bytes::Bytes::from(datagram);
        let Some(channel) = &mut self.channel else {
            let _ = conn.send_datagram(datagram);
            return;
        };
        let sent = now();
        for at in channel.send(sent) {
            let delay = at.since(sent);
            // Copies share one buffer (a reference count, not a copy of the bytes).
            let bytes = datagram.clone();
            if delay.is_zero() {
                let _ = conn.send_datagram(bytes);
            } else {
                // The delayed copy keeps the path it was sent on, as a packet already on
                // the wire would.
                let conn = conn.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = conn.send_datagram(bytes);
                });
            }
        }
    }
}
