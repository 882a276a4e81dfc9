//! The attached clients: real QUIC attachments, each made as the client makes it.
//!
//! Every client has its own ed25519 identity and runs the real attachment machine
//! ([`parley_proto::attach::Attachment`], default [`AttachConfig`]) with the supernode
//! as its one bootstrap address, performing its actions with the client's QUIC code
//! (`parley_net`): `Dial` (handshake with the machine's jittered keep-alive and
//! dead-after, `Hello` → `Welcome`, then `Supernodes`, as the client's shell does
//! after a dial) and `Publish` (the machine's freshly signed presence record). Once
//! the record is published the machine's next action is its republication 20 min
//! later, beyond any bench run, so the machine is dropped and the connection kept: from
//! then on it idles exactly as the real attachment does, a QUIC keep-alive from the
//! client every 13.5–15 s and nothing from the supernode.
//!
//! Connections share quinn endpoints: one endpoint (one UDP socket) per loopback
//! source address 127.1.x.y, holding `per_address` clients each, so the supernode's
//! per-address connection cap and one address's port range never bind.

use anyhow::{bail, Context, Result};
use parley_net::{canonical, dial_with, request, Liveness};
use parley_proto::attach::{AttachAction, AttachConfig, Attachment};
use parley_proto::messages::{ClientToSupernode, SupernodeToClient, ALPN_CLIENT};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How long one dial or request may take before the attach counts as failed (the
/// client's own is 5 s; a benchmark that saturates the machine gets twice that).
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// One attached client.
pub struct Client {
    /// Its attachment.
    pub conn: Connection,
    /// Its identity, under which its record is stored.
    pub id: PeerId,
}

/// How a [`Fleet::grow`] went.
#[derive(Debug, Default)]
pub struct Grown {
    /// Attachments that completed (published) in this call.
    pub attached: usize,
    /// Attempts that failed.
    pub failed: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Why it stopped before the target, if it did (deadline, memory).
    pub stopped: Option<String>,
    /// Wall time of the call.
    pub elapsed: Duration,
}

/// Limits on one [`Fleet::grow`].
pub struct GrowLimits {
    /// Attachments in flight at once.
    pub concurrency: usize,
    /// Give up (and say so) at this moment.
    pub deadline: Instant,
    /// Stop when the machine's available memory falls below this, MiB.
    pub min_free_mib: u64,
}

/// The loopback source address of endpoint number `n`: 127.1.0.1, 127.1.0.2, ...
pub fn source_address(n: usize) -> Ipv4Addr {
    let k = (n + 1) as u32;
    Ipv4Addr::from(0x7f01_0000u32 + k)
}

/// Clients attached to one supernode.
pub struct Fleet {
    server: SocketAddr,
    per_address: usize,
    endpoints: Vec<Endpoint>,
    /// Attach attempts so far (each takes the next slot on the current address).
    attempts: usize,
    /// The clients attached and published, in order.
    pub clients: Vec<Client>,
}

impl Fleet {
    /// No clients yet; `per_address` clients will share each source address.
    pub fn new(server: SocketAddr, per_address: usize) -> Fleet {
        Fleet {
            server,
            per_address: per_address.max(1),
            endpoints: Vec::new(),
            attempts: 0,
            clients: Vec::new(),
        }
    }

    /// Source addresses (endpoints) in use.
    pub fn addresses(&self) -> usize {
        self.endpoints.len()
    }

    fn next_endpoint(&mut self) -> Result<Endpoint> {
        let n = self.attempts / self.per_address;
        self.attempts += 1;
        while self.endpoints.len() <= n {
            let bind = SocketAddr::from((source_address(self.endpoints.len()), 0));
            let endpoint = Endpoint::client(bind)
                .with_context(|| format!("cannot bind a client endpoint on {bind}"))?;
            self.endpoints.push(endpoint);
        }
        Ok(self.endpoints[n].clone())
    }

    /// Attaches clients until `target` are attached, `limits` stop it, or (after any
    /// failure) the attempts run out. `progress` hears a line every 2 s.
    pub async fn grow(
        &mut self,
        target: usize,
        limits: &GrowLimits,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Grown> {
        let start = Instant::now();
        let want = target.saturating_sub(self.clients.len());
        let (mut launched, mut out) = (0, Grown::default());
        let mut set = JoinSet::new();
        let mut last_report = Instant::now();
        loop {
            while out.stopped.is_none() && launched < want && set.len() < limits.concurrency {
                let endpoint = self.next_endpoint()?;
                set.spawn(attach(endpoint, self.server, self.attempts));
                launched += 1;
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            match done {
                Ok(Ok(client)) => {
                    self.clients.push(client);
                    out.attached += 1;
                }
                Ok(Err(e)) => {
                    out.failed += 1;
                    out.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
                Err(e) => {
                    out.failed += 1;
                    out.first_error.get_or_insert_with(|| e.to_string());
                }
            }
            if out.stopped.is_none() && Instant::now() > limits.deadline {
                out.stopped = Some("attaching too slow for the time budget".into());
            }
            if last_report.elapsed() >= Duration::from_secs(2) {
                last_report = Instant::now();
                let free = crate::capacity::process::mem_available_mib().unwrap_or(u64::MAX);
                if out.stopped.is_none() && free < limits.min_free_mib {
                    out.stopped = Some(format!(
                        "memory budget: {free} MiB available, floor {} MiB",
                        limits.min_free_mib
                    ));
                }
                let rate = out.attached as f64 / start.elapsed().as_secs_f64();
                progress(&format!(
                    "attached {}/{target} ({rate:.0}/s, {} failed, {free} MiB free)",
                    self.clients.len(),
                    out.failed
                ));
            }
        }
        out.elapsed = start.elapsed();
        Ok(out)
    }
}

/// One client attaching as the real one does (see the module docs); `n` names it.
async fn attach(endpoint: Endpoint, server: SocketAddr, n: usize) -> Result<Client> {
    let identity = Identity::generate();
    let local = endpoint.local_addr()?;
    let now = parley_net::clock::both;
    let mut machine = Attachment::new(
        identity.clone(),
        format!("bench client {n}"),
        AttachConfig::default(),
        &[server],
        &[],
        vec![local],
        now(),
    );
    let mut conn: Option<Connection> = None;
    while let Some(action) = machine.poll_action() {
        match action {
            AttachAction::Dial {
                addr,
                expected,
                keep_alive,
            } => {
                let liveness = Liveness::Attachment {
                    keep_alive: keep_alive.interval,
                    idle: keep_alive.dead_after,
                };
                let (c, id) = dial_with(
                    &endpoint,
                    &identity,
                    addr,
                    ALPN_CLIENT,
                    expected,
                    ATTACH_TIMEOUT,
                    liveness,
                )
                .await
                .with_context(|| format!("cannot reach supernode {addr} from {local}"))?;
                let observed = match request(&c, &ClientToSupernode::Hello, ATTACH_TIMEOUT).await? {
                    SupernodeToClient::Welcome { observed, .. } => canonical(observed),
                    other => bail!("hello answered with {other:?}"),
                };
                if let SupernodeToClient::Supernodes(list) =
                    request(&c, &ClientToSupernode::Supernodes, ATTACH_TIMEOUT).await?
                {
                    machine.learn_supernodes(now(), &list);
                }
                machine.handle_dialed(now(), addr, Some((id, observed)));
                conn = Some(c);
            }
            AttachAction::Publish { to, record } => {
                let c = conn.take().context("asked to publish before attaching")?;
                let publish = ClientToSupernode::Publish(record);
                return match request(&c, &publish, ATTACH_TIMEOUT).await? {
                    SupernodeToClient::Published { .. } => {
                        machine.handle_published(now(), to, true);
                        Ok(Client {
                            conn: c,
                            id: identity.peer_id(),
                        })
                    }
                    other => bail!("publish answered with {other:?}"),
                };
            }
            _ => {}
        }
    }
    bail!("the attachment machine never asked to publish")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_distinct_loopback_addresses() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_address(255), Ipv4Addr::new(127, 1, 1, 0));
        let a = source_address(70_000);
        assert!(a.is_loopback());
        assert_ne!(a, source_address(69_999));
    }
}
