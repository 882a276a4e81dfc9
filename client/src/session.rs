//! A client's life online: the async shell around the [`Attachment`] machine, run as a
//! background task. It keeps two supernodes attached and the presence record fresh, and
//! hands the rest of the client what arrives unasked: incoming calls (streams the
//! supernodes open) and direct media connections from peers.

use crate::home::{Home, KnownHost};
use crate::output::Printer;
use crate::supernode_link::{local_ip_towards, resolve_bootstrap, SupernodeLink};
use anyhow::{bail, Context, Result};
use parley_net::clock::{both, mono_until};
use parley_proto::attach::{AttachAction, AttachConfig, Attachment};
use parley_proto::call::signal::CallSignal;
use parley_proto::messages::{ClientToSupernode, RefusalCode, SupernodeToClient};
use parley_proto::nat::NatReport;
use parley_proto::presence::{AddressKind, CandidateAddr, Contact};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A call offer delivered over one of our attachments.
pub struct IncomingCall {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub signal: CallSignal,
}

/// A handle on the running session.
pub struct ClientSession {
    pub identity: Identity,
    pub endpoint: Endpoint,
    links: watch::Receiver<Vec<SupernodeLink>>,
    pub incoming: mpsc::Receiver<IncomingCall>,
    pub direct: mpsc::Receiver<(PeerId, Connection)>,
    /// File-transfer connections peers dialed to us (ALPN `parley-file/1`).
    pub files: mpsc::Receiver<(PeerId, Connection)>,
    /// Whether our datagrams go over TCP (UDP is blocked here): then nobody can reach us
    /// directly, and calls use a relay.
    pub over_tcp: bool,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A cheap, cloneable view of the running session: its identity, endpoint and
/// attachments.
#[derive(Clone)]
pub struct SessionHandle {
    pub identity: Identity,
    pub endpoint: Endpoint,
    links: watch::Receiver<Vec<SupernodeLink>>,
    /// Our datagrams go over TCP (UDP blocked here).
    pub over_tcp: bool,
}

impl SessionHandle {
    /// The first attachment, once there is one.
    pub async fn attached(&self, timeout: Duration) -> Result<SupernodeLink> {
        let mut links = self.links.clone();
        let wait = async move {
            let l = links.wait_for(|l| !l.is_empty()).await;
            l.map(|l| l.first().cloned())
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(link)) => link.context("no attachment"),
            _ => bail!(
                "could not attach to any supernode within {} s",
                timeout.as_secs()
            ),
        }
    }

    /// Asks `req` of our attachments in turn until one answers (waiting up to `wait`
    /// for a first attachment): a supernode that died is noticed only when its
    /// keep-alive goes unanswered (up to `AttachConfig::keep_alive + dead_after`), and
    /// meanwhile the other attachment serves. Returns the attachment that answered.
    pub async fn ask(
        &self,
        req: &ClientToSupernode,
        wait: Duration,
    ) -> Result<(SupernodeLink, SupernodeToClient)> {
        let first = self.attached(wait).await?;
        let mut links = self.attachments();
        // The first attachment first; the rest as they are.
        links.sort_by_key(|l| l.addr != first.addr);
        let mut last = None;
        for link in links {
            match link.ask(req).await {
                Ok(reply) => return Ok((link, reply)),
                Err(e) => {
                    tracing::warn!("{e:#}; trying another attachment");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attachment")))
    }

    /// The supernodes we are attached to now.
    pub fn attachments(&self) -> Vec<SupernodeLink> {
        self.links.borrow().clone()
    }

    /// Our candidate addresses for direct connections: local and observed.
    pub fn candidates(&self) -> Vec<CandidateAddr> {
        if self.over_tcp {
            return Vec::new();
        }
        let port = self.endpoint.local_addr().map(|a| a.port()).unwrap_or(0);
        let mut out: Vec<CandidateAddr> = Vec::new();
        for link in self.links.borrow().iter() {
            let local = local_ip_towards(link.addr).map(|ip| SocketAddr::new(ip, port));
            for c in local
                .map(|addr| CandidateAddr {
                    kind: AddressKind::Local,
                    addr,
                })
                .into_iter()
                .chain([CandidateAddr {
                    kind: AddressKind::Observed,
                    addr: link.observed,
                }])
            {
                if !out.iter().any(|o| o.addr == c.addr) {
                    out.push(c);
                }
            }
        }
        out
    }
}

/// Why a publication failed; `clock` when the supernode refused the record for the time
/// in it (we had just signed it, so one of the two clocks is off by more than the skew
/// allowed).
struct Refused {
    why: String,
    clock: bool,
    /// The supernode holds a record of ours at least as new (only we sign them): it got
    /// our newer one first, through replication. Not a failure.
    stale: bool,
}

impl Refused {
    fn other(why: String) -> Refused {
        Refused {
            why,
            clock: false,
            stale: false,
        }
    }
}

/// What the tasks report back to the loop.
enum Report {
    Dialed(SocketAddr, Option<SupernodeLink>),
    /// The connection (by `stable_id`) of the attachment at this address closed.
    Lost(SocketAddr, usize),
    Published(Contact, Result<u16, Refused>),
    Learned(Vec<Contact>),
    /// The attachment at this address sees us at this address now.
    Observed(SocketAddr, SocketAddr),
}

impl ClientSession {
    /// Goes online in the background.
    pub async fn start(
        home: &Home,
        identity: Identity,
        endpoint: Endpoint,
        targets: &[String],
        nat: Option<NatReport>,
        out: Printer,
    ) -> Result<ClientSession> {
        let over_tcp = nat.is_some_and(|n| n.nat == parley_proto::presence::NatType::UdpBlocked);
        let boot = resolve_bootstrap(targets).await?;
        let known = home.known_hosts();
        // Over TCP every server is dialed at its advertised TCP fallback: `tcp://`
        // bootstrap addresses, and the host cache's; QUIC addresses are of no use.
        let (bootstrap, cache): (Vec<SocketAddr>, Vec<Contact>) = if over_tcp {
            let cache = known
                .iter()
                .filter_map(|h| {
                    h.tcp.map(|addr| Contact {
                        id: h.contact.id,
                        addr,
                    })
                })
                .collect();
            (boot.tcp, cache)
        } else {
            (boot.quic, known.iter().map(|h| h.contact).collect())
        };
        if bootstrap.is_empty() && cache.is_empty() {
            if over_tcp {
                bail!("UDP is blocked here and no supernode's TCP fallback is known: pass --supernode tcp://HOST:PORT (or list it in config.toml in your home)");
            }
            bail!(
                "no supernode to attach to: pass --supernode HOST:PORT or list them in config.toml in your home (the host cache is empty)"
            );
        }
        let (links_tx, links) = watch::channel(Vec::new());
        let (incoming_tx, incoming) = mpsc::channel(16);
        let (direct_tx, direct) = mpsc::channel(16);
        let (files_tx, files) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(accept_direct(endpoint.clone(), direct_tx, files_tx));
        let shell = Shell {
            home: home.clone(),
            identity: identity.clone(),
            endpoint: endpoint.clone(),
            out,
            links: links_tx,
            incoming: incoming_tx,
            nat,
            over_tcp,
            book: known.into_iter().map(|h| (h.contact.id, h)).collect(),
        };
        let task = tokio::spawn(async move {
            if let Err(e) = shell.run(bootstrap, cache, stop_rx).await {
                tracing::error!("{e:#}");
            }
        });
        Ok(ClientSession {
            over_tcp,
            identity,
            endpoint,
            links,
            incoming,
            direct,
            files,
            stop,
            task,
        })
    }

    /// What calls and lookups need of the session, to hand to other tasks.
    pub fn handle(&self) -> SessionHandle {
        SessionHandle {
            identity: self.identity.clone(),
            endpoint: self.endpoint.clone(),
            links: self.links.clone(),
            over_tcp: self.over_tcp,
        }
    }

    /// Goes offline: closes attachments and saves the host cache.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.endpoint.close(0u32.into(), b"going offline");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Hands incoming direct call connections (ALPN `parley-call/1`) to the call code, and
/// file-transfer connections (`parley-file/1`) to the transfer code.
async fn accept_direct(
    endpoint: Endpoint,
    calls: mpsc::Sender<(PeerId, Connection)>,
    files: mpsc::Sender<(PeerId, Connection)>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (calls, files) = (calls.clone(), files.clone());
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            let alpn = conn
                .handshake_data()
                .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|h| h.protocol);
            let tx = if alpn.as_deref() == Some(crate::transfer::link::ALPN_FILE) {
                files
            } else {
                calls
            };
            match parley_net::peer_id_of(&conn) {
                Ok(peer) => {
                    let _ = tx.send((peer, conn)).await;
                }
                Err(e) => tracing::debug!(error = %e, "direct connection without identity"),
            }
        });
    }
}

struct Shell {
    home: Home,
    identity: Identity,
    endpoint: Endpoint,
    out: Printer,
    links: watch::Sender<Vec<SupernodeLink>>,
    incoming: mpsc::Sender<IncomingCall>,
    nat: Option<NatReport>,
    /// Our datagrams go over TCP: the machine's addresses are TCP fallbacks.
    over_tcp: bool,
    /// Every endpoint each supernode advertised, by id: what the host cache keeps.
    book: HashMap<PeerId, KnownHost>,
}

impl Shell {
    async fn run(
        self,
        bootstrap: Vec<SocketAddr>,
        cache: Vec<Contact>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let Shell {
            home,
            identity,
            endpoint,
            out,
            links: links_tx,
            incoming,
            nat,
            over_tcp,
            mut book,
        } = self;
        let home = &home;
        let port = endpoint.local_addr()?.port();
        let first = bootstrap.first().copied().or(cache.first().map(|c| c.addr));
        let local: Vec<SocketAddr> = first
            .and_then(local_ip_towards)
            .map(|ip| vec![SocketAddr::new(ip, port)])
            .unwrap_or_default();
        let me = identity.peer_id();
        out.event(
            "online",
            json!({
                "id": me.to_string(),
                "display_name": home.display_name(),
                "local": local.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "nat": nat.map(|n| crate::render::nat(n.nat)),
                "mapped": nat.and_then(|n| n.mapped).map(|m| m.to_string()),
            }),
            match nat {
                Some(n) => format!("online as {me} (NAT: {})", crate::render::nat(n.nat)),
                None => format!("online as {me}"),
            },
        );
        let mut machine = Attachment::new(
            identity.clone(),
            home.display_name(),
            AttachConfig::default(),
            &bootstrap,
            &cache,
            local,
            both(),
        );
        if let Some(n) = nat {
            machine.set_nat(n.nat);
        }
        machine.resume_seq(home.last_seq());
        let mut saved_seq = machine.seq();
        let (tx, mut rx) = mpsc::channel::<Report>(256);
        let mut links: HashMap<SocketAddr, SupernodeLink> = HashMap::new();
        loop {
            while let Some(action) = machine.poll_action() {
                perform(action, &endpoint, &identity, &links, &tx, &out);
            }
            if machine.seq() != saved_seq {
                saved_seq = machine.seq();
                if let Err(e) = home.save_seq(saved_seq) {
                    tracing::warn!(error = %e, "cannot keep the presence sequence number");
                }
            }
            let sleep = machine
                .poll_timeout()
                .map(mono_until)
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(sleep) => machine.handle_timeout(both()),
                Some(report) = rx.recv() => match report {
                    Report::Dialed(addr, link) => {
                        let outcome = link.as_ref().map(|l| (l.id, l.observed));
                        if let Some(link) = &link {
                            let quic = link.endpoints.quic.unwrap_or(addr);
                            if over_tcp {
                                machine.set_quic_address(both(), addr, quic);
                            }
                            book.insert(link.id, KnownHost {
                                contact: Contact { id: link.id, addr: if over_tcp { quic } else { addr } },
                                tcp: link.endpoints.tcp.or(over_tcp.then_some(addr)),
                                stun: link.endpoints.stun,
                            });
                        }
                        if let Some(link) = link {
                            watch(link.clone(), tx.clone());
                            tokio::spawn(serve_supernode_streams(link.clone(), incoming.clone()));
                            links.insert(addr, link);
                            links_tx.send_replace(links.values().cloned().collect());
                        }
                        machine.handle_dialed(both(), addr, outcome);
                        save_cache(home, &machine, &book, over_tcp);
                    }
                    // Only the current connection's end counts: an older one to the
                    // same address may close after we re-attached.
                    Report::Lost(addr, conn) if links.get(&addr).is_some_and(|l| l.conn.stable_id() == conn) => {
                        links.remove(&addr);
                        links_tx.send_replace(links.values().cloned().collect());
                        machine.handle_lost(both(), addr);
                    }
                    Report::Lost(..) => {}
                    Report::Published(to, result) => {
                        match &result {
                            Ok(replicas) => out.event("published", json!({"supernode": to.addr.to_string(), "replicas": replicas}),
                                format!("presence published via {} ({replicas} replicas)", to.addr)),
                            Err(Refused { why, stale: true, .. }) => {
                                tracing::debug!(supernode = %to.addr, %why, "a newer record of ours is already held there");
                            }
                            Err(Refused { why, clock: false, .. }) => out.event("publish_failed", json!({"supernode": to.addr.to_string(), "error": why}),
                                format!("publishing via {} failed: {why}", to.addr)),
                            Err(Refused { why, clock: true, .. }) => out.event("publish_failed", json!({"supernode": to.addr.to_string(), "error": why, "clock": true}),
                                format!("publishing via {} failed, a clock is wrong: {why}", to.addr)),
                        }
                        match result {
                            Err(Refused { clock: true, .. }) => machine.handle_refused_for_clock(both(), to),
                            Err(Refused { stale: true, .. }) => machine.handle_published(both(), to, true),
                            _ => machine.handle_published(both(), to, result.is_ok()),
                        }
                    }
                    // Learned supernodes are QUIC addresses: useless through the tunnel.
                    Report::Learned(contacts) if !over_tcp => {
                        machine.learn_supernodes(both(), &contacts);
                        save_cache(home, &machine, &book, over_tcp);
                    }
                    Report::Learned(_) => {}
                    Report::Observed(addr, observed) => {
                        if let Some(link) = links.get_mut(&addr) {
                            if link.observed != observed {
                                link.observed = observed;
                                links_tx.send_replace(links.values().cloned().collect());
                            }
                        }
                        machine.handle_observed(both(), addr, observed);
                    }
                }
            }
        }
        save_cache(home, &machine, &book, over_tcp);
        for link in links.values() {
            link.conn.close(0u32.into(), b"going offline");
        }
        out.event("offline", json!({}), "offline");
        Ok(())
    }
}

/// Streams a supernode opens on our attachment carry incoming calls.
async fn serve_supernode_streams(link: SupernodeLink, tx: mpsc::Sender<IncomingCall>) {
    while let Ok((send, mut recv)) = link.conn.accept_bi().await {
        match parley_net::read_frame::<CallSignal>(&mut recv).await {
            Ok(signal) => {
                if tx.send(IncomingCall { send, recv, signal }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(supernode = %link.addr, error = %e, "bad call signalling frame")
            }
        }
    }
}

/// Saves the machine's host cache with every endpoint the supernodes advertised. Over
/// TCP the machine's addresses are TCP fallbacks: an entry is kept only when its QUIC
/// address is known (from its Welcome or an earlier cache).
fn save_cache(
    home: &Home,
    machine: &Attachment,
    book: &HashMap<PeerId, KnownHost>,
    over_tcp: bool,
) {
    let hosts: Vec<KnownHost> = machine
        .host_cache()
        .into_iter()
        .filter_map(|c| match (book.get(&c.id), over_tcp) {
            (Some(k), true) => Some(KnownHost {
                tcp: Some(c.addr),
                ..*k
            }),
            (None, true) => None,
            (Some(k), false) => Some(KnownHost { contact: c, ..*k }),
            (None, false) => Some(KnownHost {
                contact: c,
                tcp: None,
                stun: None,
            }),
        })
        .collect();
    if let Err(e) = home.save_known_hosts(&hosts) {
        tracing::warn!(error = %e, "cannot save the host cache");
    }
}

fn perform(
    action: AttachAction,
    endpoint: &Endpoint,
    identity: &Identity,
    links: &HashMap<SocketAddr, SupernodeLink>,
    tx: &mpsc::Sender<Report>,
    out: &Printer,
) {
    match action {
        AttachAction::Dial {
            addr,
            expected,
            keep_alive,
        } => {
            let (endpoint, identity, tx) = (endpoint.clone(), identity.clone(), tx.clone());
            tokio::spawn(async move {
                let link =
                    match SupernodeLink::connect(&endpoint, &identity, addr, expected, keep_alive)
                        .await
                    {
                        Ok(link) => Some(link),
                        Err(e) => {
                            tracing::warn!("{e:#}");
                            None
                        }
                    };
                if let Some(link) = &link {
                    if let Ok(SupernodeToClient::Supernodes(list)) =
                        link.ask(&ClientToSupernode::Supernodes).await
                    {
                        let _ = tx.send(Report::Learned(list)).await;
                    }
                }
                let _ = tx.send(Report::Dialed(addr, link)).await;
            });
        }
        AttachAction::Publish { to, record } => {
            let Some(link) = links.get(&to.addr).cloned() else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = match link.ask(&ClientToSupernode::Publish(record)).await {
                    Ok(SupernodeToClient::Published { replicas }) => Ok(replicas),
                    Ok(SupernodeToClient::Refused(r)) => Err(Refused {
                        clock: r.code == RefusalCode::Expired,
                        stale: r.code == RefusalCode::Stale,
                        why: r.message,
                    }),
                    Ok(other) => Err(Refused::other(format!("unexpected reply {other:?}"))),
                    Err(e) => Err(Refused::other(format!("{e:#}"))),
                };
                let _ = tx.send(Report::Published(to, result)).await;
            });
        }
        AttachAction::Observe { to } => {
            let Some(link) = links.get(&to.addr).cloned() else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(SupernodeToClient::Welcome { observed, .. }) =
                    link.ask(&ClientToSupernode::Hello).await
                {
                    let observed = parley_net::canonical(observed);
                    let _ = tx.send(Report::Observed(to.addr, observed)).await;
                }
            });
        }
        AttachAction::Attached(c) => out.event(
            "attached",
            json!({"supernode": c.addr.to_string(), "supernode_id": c.id.to_string()}),
            format!("attached to supernode {} ({})", c.addr, c.id.short()),
        ),
        AttachAction::Detached(c) => out.event(
            "detached",
            json!({"supernode": c.addr.to_string(), "supernode_id": c.id.to_string()}),
            format!(
                "lost supernode {} ({}); finding another",
                c.addr,
                c.id.short()
            ),
        ),
    }
}

/// Reports when the attachment's connection dies.
fn watch(link: SupernodeLink, tx: mpsc::Sender<Report>) {
    tokio::spawn(async move {
        let reason = link.conn.closed().await;
        tracing::info!(supernode = %link.addr, %reason, "attachment closed");
        let _ = tx
            .send(Report::Lost(link.addr, link.conn.stable_id()))
            .await;
    });
}
