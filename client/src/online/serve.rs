//! `parley online --serve`: a running client that proves it is reachable becomes a
//! supernode and a relay for others, in its own process (issue 10; the decisions are
//! `parley_proto::promotion::Promotion`'s, the dial-back protocol `parley_proto::reach`,
//! the peer relay's limits and trust `parley_proto::relay::peer`).
//!
//! The serving roles have a key of their own (`serve.key` in the home, made on first
//! use), never the user's: the supernode signs relay tokens and the relay trusts only
//! that key. The serving socket (UDP, on the local IP towards the first attachment, an
//! ephemeral port) is bound first and answers only probes (ALPN `parley-probe/1`); once
//! a probe from another supernode proves it reachable, the socket is handed to the
//! supernode role (rebinding the same port) and a relay starts beside it.
//!
//! Without `--relay-kbps` the relay's budget comes from the upload, measured against the
//! asked supernode once the dial-back passed (`parley_proto::upload`; the probe is
//! `parley_net::upload::measure_upload`).

use super::lock;
use crate::home::Home;
use crate::output::Printer;
use crate::session::SessionHandle;
use crate::supernode_link::{local_ip_towards, SupernodeLink};
use anyhow::{Context, Result};
use parley_net::clock::{mono, mono_until};
use parley_net::{make_endpoint_on, peer_id_of, read_frame, request, write_frame};
use parley_proto::keyfile;
use parley_proto::presence::{Contact, NatType};
use parley_proto::promotion::{
    Action, DemoteReason, Promotion, PromotionConfig, RelayBudget, ServeMode,
};
use parley_proto::reach::{DialBack, Nonce, Probe, ProbeAck, ProbeReply, ALPN_PROBE};
use parley_proto::relay::peer::peer_config;
use parley_proto::upload::{UploadReply, MAX_PROBE_BYTES};
use parley_proto::{Identity, PeerId};
use parley_relay::RelayParams;
use parley_supernode::limits::Limits;
use parley_supernode::relays::RelayDirectory;
use parley_supernode::ServerParams;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a dial-back request may take (the asked supernode tries up to three
/// probers, 6 s each).
const DIAL_BACK_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the serving roles' load is looked at.
const LOAD_EVERY: Duration = Duration::from_secs(5);
/// Connections a volunteer's supernode role holds at most (about 64 KiB each).
const SERVE_CONNS: usize = 1_000;
/// How long demotion waits for each role to stop: the supernode role hands its
/// records over first (at most `parley_supernode::server::HAND_OVER_WAIT`, 2 s), then
/// closes its connections (at most 2 s more).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long an upload probe may take in all (the supernode counts for at most 2 s).
const MEASURE_TIMEOUT: Duration = Duration::from_secs(12);

/// `--serve`, `--promote-after`, `--relay-kbps`.
#[derive(Clone, Copy, Debug)]
pub struct ServeConfig {
    pub mode: ServeMode,
    pub promote_after: Duration,
    /// `--relay-kbps`; `None`: a share of the measured upload.
    pub relay_kbps: Option<u32>,
}

/// Where the roles serve while promoted (the `promoted` event's fields), for `status`.
pub type Serving = Arc<Mutex<Option<serde_json::Value>>>;

/// The serving task; [`ServeHandle::quit`] demotes and stops it.
pub struct ServeHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServeHandle {
    /// Demotes (if serving) and waits for the roles to stop.
    pub async fn quit(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(STOP_GRACE * 2, self.task).await;
    }
}

/// Starts the promotion machine in the background (nothing at all with `never`).
pub fn spawn(
    home: &Home,
    session: SessionHandle,
    nat: NatType,
    cfg: ServeConfig,
    out: Printer,
    serving: Serving,
) -> ServeHandle {
    let (stop, stopped) = watch::channel(false);
    let home = home.clone();
    let task = tokio::spawn(async move {
        if cfg.mode == ServeMode::Never {
            return;
        }
        if let Err(e) = run(&home, session, nat, cfg, out, stopped, &serving).await {
            out.warning(&format!("not serving: {e:#}"));
        }
    });
    ServeHandle { stop, task }
}

/// The serving key and socket; until promotion the socket answers only probes.
struct Socket {
    identity: Identity,
    serving: SocketAddr,
    probes: quinn::Endpoint,
    listener: tokio::task::JoinHandle<()>,
}

impl Socket {
    /// Loads (or makes) `serve.key` and binds the serving socket on our IP towards
    /// `towards` (a supernode), an ephemeral port.
    fn open(home: &Home, towards: SocketAddr, arrived: mpsc::Sender<Arrived>) -> Result<Socket> {
        let identity = keyfile::load_or_create(&home.dir().join("serve.key"))
            .context("loading the serving key (serve.key in your home)")?;
        let ip = local_ip_towards(towards).context("no local IP towards the supernodes")?;
        let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            .context("cannot bind the serving socket")?;
        let serving = socket.local_addr()?;
        let probes = make_endpoint_on(socket, &identity, &[ALPN_PROBE])?;
        let listener = tokio::spawn(accept_probes(probes.clone(), arrived));
        Ok(Socket {
            identity,
            serving,
            probes,
            listener,
        })
    }

    /// Stops answering probes and frees the port for the supernode role (quinn drops
    /// the socket once the last endpoint handle is gone and its connections closed).
    async fn release(self) -> (Identity, SocketAddr) {
        self.listener.abort();
        let _ = self.listener.await;
        self.probes.close(0u32.into(), b"promoted");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.probes.wait_idle()).await;
        drop(self.probes);
        (self.identity, self.serving)
    }
}

/// A probe that arrived, waiting for the machine's verdict.
struct Arrived {
    nonce: Nonce,
    prober: PeerId,
    from: SocketAddr,
    ack: oneshot::Sender<bool>,
}

/// The roles while promoted.
struct Roles {
    quic: SocketAddr,
    /// The IP the dial-back proved (the supernodes' view of us, which behind a NAT
    /// that forwards the port is not `quic`'s).
    proven: IpAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    relay: parley_relay::Bound,
    supernode: parley_supernode::Bound,
}

async fn run(
    home: &Home,
    session: SessionHandle,
    nat: NatType,
    cfg: ServeConfig,
    out: Printer,
    mut stopped: watch::Receiver<bool>,
    serving: &Serving,
) -> Result<()> {
    if let Some(kbps) = cfg.relay_kbps.filter(|k| peer_config(*k).is_none()) {
        anyhow::bail!("--relay-kbps {kbps} is too small for one relayed call (at least 512)");
    }
    let config = PromotionConfig {
        mode: cfg.mode,
        promote_after: cfg.promote_after,
        relay_kbps: cfg.relay_kbps,
        ..PromotionConfig::default()
    };
    let mut machine = Promotion::new(config, nat, mono());
    let (arrived_tx, mut arrived) = mpsc::channel(8);
    let (replies_tx, mut replies) = mpsc::channel::<(Nonce, Option<String>)>(8);
    let (measured_tx, mut measured) = mpsc::channel::<Result<u32, String>>(2);
    let mut roles: Option<Roles> = None;
    // Bound at the first check (a client that never checks writes no key, binds nothing).
    let mut socket: Option<Socket> = None;
    let mut asked_ip = IpAddr::from([0u8; 4]);
    loop {
        let links = session.attachments();
        machine.handle_attached(
            links
                .iter()
                .map(|l| Contact {
                    id: l.id,
                    addr: l.addr,
                })
                .collect(),
        );
        machine.handle_timeout(mono(), Nonce(rand::random()));
        while let Some(action) = machine.poll_action() {
            match action {
                Action::AskDialBack { via, nonce } => {
                    let Some(link) = links.iter().find(|l| l.addr == via.addr).cloned() else {
                        continue;
                    };
                    // A socket bound before the local IP changed is of no use.
                    let local = local_ip_towards(link.addr);
                    if socket
                        .as_ref()
                        .is_none_or(|s| Some(s.serving.ip()) != local)
                    {
                        socket = Some(Socket::open(home, link.addr, arrived_tx.clone())?);
                    }
                    let Some(sock) = &socket else { continue };
                    let req = DialBack {
                        addr: SocketAddr::new(link.observed.ip(), sock.serving.port()),
                        key: sock.identity.peer_id(),
                        nonce,
                    };
                    asked_ip = req.addr.ip();
                    tokio::spawn(ask_dial_back(link, req, replies_tx.clone()));
                }
                Action::MeasureUpload { via } => {
                    match links.iter().find(|l| l.addr == via.addr).cloned() {
                        Some(link) => {
                            tokio::spawn(measure(link, cfg.mode, out, measured_tx.clone()));
                        }
                        None => machine.handle_upload(mono(), Err(format!("{} is gone", via.addr))),
                    }
                }
                Action::Promote { prober, budget } => {
                    // The port goes to the supernode role; a later check (after an
                    // overload demotion) binds a new one.
                    let Some(sock) = socket.take() else { continue };
                    let (identity, proven_at) = sock.release().await;
                    let join = join_targets(home, &links, &identity.peer_id());
                    let proven = asked_ip;
                    let started = match peer_config(budget.kbps) {
                        Some(relay_config) => {
                            start_roles(&identity, proven_at, proven, join, relay_config).await
                        }
                        None => Err(anyhow::anyhow!("a relay budget of {} kbit/s", budget.kbps)),
                    };
                    match started {
                        Ok(r) => {
                            let fields = announce_promoted(out, &r, &identity, prober, budget);
                            *lock(serving) = Some(fields);
                            roles = Some(r);
                        }
                        Err(e) => {
                            out.warning(&format!("could not start serving: {e:#}"));
                            machine.handle_quit(mono());
                        }
                    }
                }
                Action::Demote(reason) => {
                    if let Some(r) = roles.take() {
                        lock(serving).take();
                        stop_roles(r).await;
                        announce_demoted(out, reason);
                    }
                }
                Action::CheckFailed(why) => out.event(
                    "promotion_check_failed",
                    json!({ "reason": why }),
                    format!("reachability check failed (retrying later): {why}"),
                ),
                // Said out loud only to whoever asked for `always`.
                Action::Ineligible(why) if cfg.mode == ServeMode::Always => {
                    out.event("not_serving", json!({ "reason": why }), why)
                }
                Action::Ineligible(why) => tracing::info!("{why}"),
            }
        }
        let wake = machine
            .poll_timeout()
            .map_or(LOAD_EVERY, mono_until)
            .min(LOAD_EVERY);
        tokio::select! {
            _ = stopped.changed() => {
                machine.handle_quit(mono());
                while let Some(action) = machine.poll_action() {
                    if let Action::Demote(reason) = action {
                        if let Some(r) = roles.take() {
                            lock(serving).take();
                            stop_roles(r).await;
                            announce_demoted(out, reason);
                        }
                    }
                }
                return Ok(());
            }
            Some(a) = arrived.recv() => {
                let ok = machine.handle_probe(mono(), a.nonce, a.prober, a.from);
                let _ = a.ack.send(ok);
            }
            Some((nonce, failure)) = replies.recv() => machine.handle_reply(mono(), nonce, failure),
            Some(result) = measured.recv() => machine.handle_upload(mono(), result),
            _ = tokio::time::sleep(wake) => {
                if let Some(r) = &roles {
                    let load = r.relay.load();
                    let (conns, cap) = r.supernode.connections();
                    machine.handle_load(mono(), load.legs >= load.max_legs || conns >= cap);
                    if network_changed(r, &session.attachments()) {
                        machine.handle_network_changed(mono());
                    }
                }
            }
        }
    }
}

/// Whether the address the roles serve on is no longer ours: no attachment sees us at
/// the proven IP any more, or our local IP towards them is not the serving one. With
/// no attachment at all there is nothing to tell.
fn network_changed(roles: &Roles, links: &[SupernodeLink]) -> bool {
    let Some(first) = links.first() else {
        return false;
    };
    let seen = links
        .iter()
        .any(|l| l.observed.ip().to_canonical() == roles.proven.to_canonical());
    let local = local_ip_towards(first.addr);
    !seen || local.is_some_and(|ip| ip != roles.quic.ip())
}

/// Asks `link`'s supernode for a dial-back; reports failure (or `None`) for `req`'s nonce.
async fn ask_dial_back(
    link: SupernodeLink,
    req: DialBack,
    replies: mpsc::Sender<(Nonce, Option<String>)>,
) {
    let failure = match request::<DialBack, ProbeReply>(&link.conn, &req, DIAL_BACK_TIMEOUT).await {
        Ok(ProbeReply::Probed { .. }) => None,
        Ok(ProbeReply::Failed(why)) => Some(format!("{}: {why}", link.addr)),
        Ok(ProbeReply::Refused(r)) => Some(format!("{} refused: {}", link.addr, r.message)),
        Err(e) => Some(format!("{}: {e}", link.addr)),
    };
    let _ = replies.send((req.nonce, failure)).await;
}

/// Measures the upload against `link`'s supernode; reports the rate (kbit/s) or why
/// there is none (printed as `upload_measured`; a failure is printed here only for
/// `always`, which then serves at the minimum: `auto` reports it as a failed check).
async fn measure(
    link: SupernodeLink,
    mode: ServeMode,
    out: Printer,
    result: mpsc::Sender<Result<u32, String>>,
) {
    let outcome = match parley_net::upload::measure_upload(
        &link.conn,
        MAX_PROBE_BYTES,
        MEASURE_TIMEOUT,
    )
    .await
    {
        Ok(UploadReply::Measured(report)) => match report.kbps() {
            Some(kbps) => {
                let ms = report.samples.last().map_or(0, |s| s.micros / 1000);
                out.event(
                    "upload_measured",
                    json!({ "supernode": link.addr.to_string(), "upload_kbps": kbps, "bytes": report.bytes(), "ms": ms }),
                    format!("upload measured through {}: {kbps} kbit/s ({} bytes in {ms} ms)", link.addr, report.bytes()),
                );
                Ok(kbps)
            }
            None => Err(format!(
                "{}: too little arrived to tell a rate ({} bytes)",
                link.addr,
                report.bytes()
            )),
        },
        Ok(UploadReply::Refused(r)) => Err(format!("{} refused: {}", link.addr, r.message)),
        Err(e) => Err(format!("{}: {e}", link.addr)),
    };
    if let (Err(why), ServeMode::Always) = (&outcome, mode) {
        out.event(
            "upload_measurement_failed",
            json!({ "reason": why }),
            format!(
                "could not measure the upload ({why}); serving at the minimum, one relayed call"
            ),
        );
    }
    let _ = result.send(outcome).await;
}

/// Answers probes on the serving socket: each connection carries one [`Probe`],
/// acknowledged only when the machine says it is the current check's.
async fn accept_probes(endpoint: quinn::Endpoint, arrived: mpsc::Sender<Arrived>) {
    while let Some(incoming) = endpoint.accept().await {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            let answer = async {
                let conn = incoming.await?;
                let prober = peer_id_of(&conn)?;
                let (mut send, mut recv) = conn.accept_bi().await?;
                let probe: Probe = read_frame(&mut recv).await?;
                let (ack, verdict) = oneshot::channel();
                let from = parley_net::canonical(conn.remote_address());
                let nonce = probe.nonce;
                if arrived
                    .send(Arrived {
                        nonce,
                        prober,
                        from,
                        ack,
                    })
                    .await
                    .is_ok()
                    && verdict.await == Ok(true)
                {
                    write_frame(&mut send, &ProbeAck { nonce }).await?;
                    // Let the ack leave before the connection goes.
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                }
                Ok::<(), parley_net::NetError>(())
            };
            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), answer).await {
                tracing::debug!(error = %e, "probe timed out");
            }
        });
    }
}

/// Where the supernode role joins the overlay: the client's attachments, then hosts it
/// knows, never its own serving key (a host cache from an earlier promotion holds it,
/// at an address that is gone).
fn join_targets(home: &Home, links: &[SupernodeLink], own: &PeerId) -> Vec<String> {
    let mut join: Vec<SocketAddr> = links.iter().map(|l| l.addr).collect();
    for h in home.known_hosts() {
        if h.contact.id != *own && !join.contains(&h.contact.addr) && join.len() < 8 {
            join.push(h.contact.addr);
        }
    }
    join.iter().map(|a| a.to_string()).collect()
}

async fn start_roles(
    identity: &Identity,
    quic: SocketAddr,
    proven: IpAddr,
    join: Vec<String>,
    relay_config: parley_proto::relay::RelayConfig,
) -> Result<Roles> {
    let me = identity.peer_id();
    let (stop, stopped) = watch::channel(false);
    let params = || ServerParams {
        // Any free port on the serving IP: one address gives RFC 5780's change-port
        // answers but no change-IP ones (clients then learn mapping, not filtering).
        stun_fallback: true,
        join: join.clone(),
        limits: Limits {
            conns_total: SERVE_CONNS,
            ..Limits::default()
        },
        // The IP the dial-back proved others reach us at (behind a port-forwarding
        // NAT, not the bound one): the overlay position follows it (BEP 42).
        public_ip: Some(proven),
        ..ServerParams::new(identity.clone(), quic, SocketAddr::new(quic.ip(), 0))
    };
    // The probe endpoint just released the port: retry its bind for up to 2 s.
    let mut tries = 0;
    let (bound, serve) = loop {
        // Its own relay, and only that one, is granted to calls; announced to the log
        // (stdout is the client's).
        let relays = RelayDirectory::new([me]).quiet();
        match parley_supernode::server::start_with(params(), relays, stopped.clone()).await {
            Ok(started) => break started,
            Err(e) if tries < 20 => {
                tries += 1;
                tracing::debug!(error = %e, "serving port not free yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let mut tasks = vec![tokio::spawn(serve)];
    let (relay, serve_relay) = parley_relay::start(
        RelayParams {
            supernodes: vec![bound.quic.to_string()],
            data_threads: 1,
            ..RelayParams::new(
                identity.clone(),
                SocketAddr::new(quic.ip(), 0),
                vec![me],
                relay_config,
            )
        },
        stopped,
    )
    .await
    .context("starting the relay role")?;
    tasks.push(tokio::spawn(serve_relay));
    Ok(Roles {
        supernode: bound.clone(),
        quic: bound.quic,
        proven,
        stop,
        tasks,
        relay,
    })
}

async fn stop_roles(roles: Roles) {
    // The supernode hands its records to its neighbours (at most 2 s), then closes
    // every connection (clients re-attach elsewhere at once: a closed attachment is
    // replaced within 0-10 s); the relay closes every leg.
    let _ = roles.stop.send(true);
    for task in roles.tasks {
        let _ = tokio::time::timeout(STOP_GRACE, task).await;
    }
}

/// Prints one event with its fields in the given order, as the issue spells the
/// `promoted` line (`{"event":"promoted","roles":[...],"quic":"IP:PORT",...}`);
/// `Printer::event` would sort them. Returns the fields as an object.
fn ordered_event(
    out: Printer,
    event: &str,
    fields: Vec<(&str, serde_json::Value)>,
    text: String,
) -> serde_json::Value {
    let object: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if out.is_json() {
        let mut line = format!("{{\"event\":{}", json!(event));
        for (k, v) in &fields {
            line += &format!(",{}:{v}", json!(k));
        }
        println!("{line}}}");
    } else {
        out.event(event, serde_json::Value::Object(object.clone()), text);
    }
    serde_json::Value::Object(object)
}

/// Prints `promoted`; returns its fields.
fn announce_promoted(
    out: Printer,
    r: &Roles,
    identity: &Identity,
    prober: PeerId,
    budget: RelayBudget,
) -> serde_json::Value {
    let kbps = budget.kbps;
    let load = r.relay.load();
    let fields = vec![
        ("roles", json!(["supernode", "relay"])),
        ("quic", json!(r.quic.to_string())),
        ("relay", json!(r.relay.quic.to_string())),
        ("id", json!(identity.peer_id().to_string())),
        ("prober", json!(prober.to_string())),
        ("relay_kbps", json!(kbps)),
        ("relay_kbps_source", json!(budget.source.as_str())),
        ("upload_kbps", json!(budget.upload_kbps)),
        ("max_legs", json!(load.max_legs)),
    ];
    let text = format!(
        "serving: supernode at {} and relay at {} (key {}; up to {kbps} kbit/s of relaying)",
        r.quic,
        r.relay.quic,
        identity.peer_id().short()
    );
    ordered_event(out, "promoted", fields, text)
}

fn announce_demoted(out: Printer, reason: DemoteReason) {
    let fields = vec![
        ("roles", json!(["supernode", "relay"])),
        ("reason", json!(reason.as_str())),
    ];
    let text = format!("stopped serving ({})", reason.as_str());
    ordered_event(out, "demoted", fields, text);
}
