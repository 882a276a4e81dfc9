//! `parley lookup ID|NAME`: ask a supernode for a user's presence record — through the
//! running client's attachment when one runs (so our own attachment is never disturbed),
//! else over a connection of our own.

use crate::contacts::Contacts;
use crate::home::Home;
use crate::output::{Printer, EXIT_NOT_FOUND, EXIT_OK};
use crate::render::{record_json, record_text};
use crate::session::SessionHandle;
use crate::supernode_link::{resolve_all, SupernodeLink};
use anyhow::{anyhow, bail, Result};
use parley_net::clock::now;
use parley_proto::attach::AttachConfig;
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use parley_proto::{Identity, PeerId};
use quinn::Endpoint;
use serde_json::json;
use std::time::Duration;

/// Asks `link` for `wanted`'s record and prints it; returns the exit code, or `None`
/// when this supernode could not answer (try another).
async fn ask(link: &SupernodeLink, wanted: PeerId, out: Printer) -> Result<Option<i32>> {
    let reply = link.ask(&ClientToSupernode::Lookup(wanted)).await;
    answer(link, wanted, reply, out)
}

/// Prints what `link` answered to a lookup of `wanted` (see [`ask`]).
fn answer(
    link: &SupernodeLink,
    wanted: PeerId,
    reply: Result<SupernodeToClient>,
    out: Printer,
) -> Result<Option<i32>> {
    let addr = link.addr;
    match reply {
        Ok(SupernodeToClient::Found(signed)) => {
            // Never trust the supernode: check the owner's signature ourselves.
            let record = signed
                .verify(now())
                .map_err(|e| anyhow!("supernode {addr} returned a bad record: {e}"))?;
            if record.id != wanted {
                bail!("supernode {addr} returned the record of another user");
            }
            out.event(
                "found",
                json!({"record": record_json(record)}),
                record_text(record, now()),
            );
            Ok(Some(EXIT_OK))
        }
        Ok(SupernodeToClient::NotFound) => {
            out.error(
                &format!("not found: nobody with id {wanted} is online"),
                EXIT_NOT_FOUND,
            );
            Ok(Some(EXIT_NOT_FOUND))
        }
        Ok(SupernodeToClient::Refused(r)) => {
            bail!("supernode {addr} refused the lookup: {}", r.message)
        }
        Ok(other) => bail!("supernode {addr} answered with {other:?}"),
        Err(e) => {
            tracing::warn!("{e:#}");
            Ok(None)
        }
    }
}

/// The id a lookup target names: an id, or a contact's name.
pub fn target(home: &Home, id: &str) -> Result<PeerId> {
    Ok(Contacts::load(home).resolve(id)?.0)
}

/// Inside the running client: through its attachment.
pub async fn through_session(session: &SessionHandle, id: &str, out: Printer) -> Result<i32> {
    let wanted: PeerId = id.parse().map_err(|e| anyhow!("{id:?}: {e}"))?;
    // The first attachment that answers (one may be a supernode that just died).
    let (link, reply) = session
        .ask(&ClientToSupernode::Lookup(wanted), Duration::from_secs(15))
        .await?;
    answer(&link, wanted, Ok(reply), out)?
        .ok_or_else(|| anyhow!("supernode {} did not answer", link.addr))
}

/// Supernodes to ask without a running client: the given addresses (key unknown), then the
/// host cache (keys pinned).
async fn candidates(
    home: &Home,
    targets: &[String],
) -> Result<Vec<(std::net::SocketAddr, Option<PeerId>)>> {
    let mut candidates: Vec<_> = resolve_all(targets)
        .await?
        .into_iter()
        .map(|a| (a, None))
        .collect();
    candidates.extend(home.host_cache().into_iter().map(|c| (c.addr, Some(c.id))));
    Ok(candidates)
}

/// Without a running client: dial the given supernodes, then the host cache.
pub async fn run(
    home: &Home,
    identity: Identity,
    endpoint: Endpoint,
    wanted: PeerId,
    targets: &[String],
    out: Printer,
) -> Result<i32> {
    let candidates = candidates(home, targets).await?;
    if candidates.is_empty() {
        bail!("no supernode to ask: pass --supernode HOST:PORT (or list them in config.toml in your home)");
    }
    let mut last_error = None;
    let liveness = AttachConfig::default().liveness();
    for (addr, expected) in candidates {
        let link =
            match SupernodeLink::connect(&endpoint, &identity, addr, expected, liveness).await {
                Ok(link) => link,
                Err(e) => {
                    tracing::warn!("{e:#}");
                    last_error = Some(e);
                    continue;
                }
            };
        let result = ask(&link, wanted, out).await;
        link.conn.close(0u32.into(), b"done");
        if let Some(code) = result? {
            return Ok(code);
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("no supernode answered")))
}

/// `parley contacts` without a running client: one connection, one lookup per contact.
pub async fn contacts_once(
    home: &Home,
    identity: Identity,
    endpoint: Endpoint,
    targets: &[String],
    out: Printer,
) -> Result<()> {
    use crate::presence::{Seen, State};
    let contacts = Contacts::load(home);
    let mut seen = std::collections::HashMap::new();
    let candidates = candidates(home, targets).await?;
    let mut link = None;
    let liveness = AttachConfig::default().liveness();
    for (addr, expected) in candidates {
        if contacts.list.is_empty() {
            break;
        }
        if let Ok(l) = SupernodeLink::connect(&endpoint, &identity, addr, expected, liveness).await
        {
            link = Some(l);
            break;
        }
    }
    if let Some(link) = &link {
        for (_, id) in contacts.ids() {
            let (state, name) = match link.ask(&ClientToSupernode::Lookup(id)).await {
                Ok(SupernodeToClient::Found(signed)) => match signed.verify(now()) {
                    Ok(r) if r.id == id => (State::Online, r.display_name.clone()),
                    _ => (State::Unknown, String::new()),
                },
                Ok(SupernodeToClient::NotFound) => (State::Offline, String::new()),
                _ => (State::Unknown, String::new()),
            };
            seen.insert(
                id.to_string(),
                Seen {
                    state,
                    checked: std::time::Instant::now(),
                    last_online: None,
                    display_name: name,
                },
            );
        }
        link.conn.close(0u32.into(), b"done");
    } else if !contacts.list.is_empty() {
        out.warning("no supernode reachable: presence unknown (pass --supernode HOST:PORT, or list them in config.toml in your home)");
    }
    crate::presence::print(&contacts, &seen, out);
    Ok(())
}
