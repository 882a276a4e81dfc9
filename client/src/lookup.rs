//! `parley lookup ID`: ask a supernode for a user's presence record.

use crate::home::Home;
use crate::render::{record_json, record_text};
use crate::supernode_link::{resolve_all, SupernodeLink};
use anyhow::{anyhow, bail, Result};
use parley_net::clock::now;
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use parley_proto::{Identity, PeerId};
use quinn::Endpoint;

/// Exit code for "no such user online" (distinct from errors, which exit 1).
pub const NOT_FOUND_EXIT: i32 = 2;

pub enum Outcome {
    Found,
    NotFound,
}

pub async fn run(
    home: &Home,
    identity: Identity,
    endpoint: Endpoint,
    id: &str,
    targets: &[String],
    json: bool,
) -> Result<Outcome> {
    let wanted: PeerId = id.parse().map_err(|e| anyhow!("{id:?}: {e}"))?;
    let mut candidates: Vec<(std::net::SocketAddr, Option<PeerId>)> = resolve_all(targets)
        .await?
        .into_iter()
        .map(|a| (a, None))
        .collect();
    candidates.extend(home.host_cache().into_iter().map(|c| (c.addr, Some(c.id))));
    if candidates.is_empty() {
        bail!("no supernode to ask: pass --supernode HOST:PORT");
    }
    let mut last_error = None;
    for (addr, expected) in candidates {
        let link = match SupernodeLink::connect(&endpoint, &identity, addr, expected).await {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!("{e:#}");
                last_error = Some(e);
                continue;
            }
        };
        let reply = link.ask(&ClientToSupernode::Lookup(wanted)).await;
        link.conn.close(0u32.into(), b"done");
        match reply {
            Ok(SupernodeToClient::Found(signed)) => {
                // Never trust the supernode: check the owner's signature ourselves.
                let record = signed
                    .verify(now())
                    .map_err(|e| anyhow!("supernode {addr} returned a bad record: {e}"))?;
                if record.id != wanted {
                    bail!("supernode {addr} returned the record of another user");
                }
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"event": "found", "record": record_json(record)})
                    );
                } else {
                    println!("{}", record_text(record, now()));
                }
                return Ok(Outcome::Found);
            }
            Ok(SupernodeToClient::NotFound) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"event": "not_found", "id": wanted.to_string()})
                    );
                }
                eprintln!("not found: nobody with id {wanted} is online");
                return Ok(Outcome::NotFound);
            }
            Ok(SupernodeToClient::Refused(r)) => {
                bail!("supernode {addr} refused the lookup: {}", r.message)
            }
            Ok(other) => bail!("supernode {addr} answered with {other:?}"),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("no supernode answered")))
}
