//! Receiving files in the running client (`parley online --accept-files DIR`): answer
//! file offers, take the transfer connections that follow, connect to the other
//! recipients, run the swarm, and announce what arrived (`file_received`).
//!
//! Every transfer is keyed by its manifest root. An offer for a root already being
//! received (the sender lost us and offers again) joins that transfer; a connection
//! for a root we have not been offered (yet) waits up to 10 s for the offer, then is
//! refused. A transfer that loses every peer for 30 s stops with its partial file and
//! resume file kept: the next offer of the same file resumes from the verified chunks.

use super::hello::{self, QuicPeer};
use super::link::{self, LinkReport, Role, Store};
use super::{hex, lock, Table};
use crate::contacts::Contacts;
use crate::home::Home;
use crate::output::Printer;
use crate::session::{IncomingCall, SessionHandle};
use anyhow::{bail, Context, Result};
use parley_net::clock::{mono, now};
use parley_proto::call::signal::{FileOffer, RelayGrant};
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use parley_proto::transfer::{Bitfield, Manifest, Swarm};
use parley_proto::PeerId;
use quinn::Connection;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long an accepted offer waits for the sender's connection.
const FIRST_CONNECTION: Duration = Duration::from_secs(30);
/// How long a transfer waits with no peer at all before it stops (resumable).
const IDLE: Duration = Duration::from_secs(30);
/// How long a connection for an unknown transfer waits for its offer.
const OFFER_WAIT: Duration = Duration::from_secs(10);
/// Attempts (2 s apart) to reach another recipient.
const PEER_DIALS: u32 = 10;

/// Most files received at once; further offers are refused until one ends.
pub const MAX_ACTIVE: usize = 8;

/// What a receiver knows when an offer arrives.
#[derive(Clone, Copy, Debug)]
struct Admission {
    /// `--accept-files` is set.
    accepting: bool,
    /// The sender is one of our contacts.
    from_contact: bool,
    /// Transfers being received now.
    active: usize,
    /// The offer is for a file already arriving (a repeated offer joins it).
    joins: bool,
}

/// Whether to accept a file offer: files are accepted here (`--accept-files`), from a
/// contact (a stranger who knows our id must not fill our disk), the offer passes its
/// checks, a relayed one has a relay, and there is room for another transfer (an offer
/// of a file already arriving joins it).
fn admit(
    a: Admission,
    sender: &PeerId,
    me: &PeerId,
    file: &FileOffer,
    relays: &[RelayGrant],
) -> Result<(), String> {
    if !a.accepting {
        return Err("this client does not accept files (start it with --accept-files DIR)".into());
    }
    if !a.from_contact {
        return Err(format!(
            "{} is not one of your contacts: files are accepted only from contacts (`parley contact add NAME ID`)",
            sender.short()
        ));
    }
    file.check(sender, me).map_err(|e| e.to_string())?;
    if file.relayed && relays.is_empty() {
        return Err("the file comes through a relay, and none was granted".into());
    }
    if !a.joins && a.active >= MAX_ACTIVE {
        return Err(format!(
            "already receiving {MAX_ACTIVE} files; try again when one has arrived"
        ));
    }
    Ok(())
}

/// A transfer connection: its streams, the manifest its hello carried, the connection.
type Arrival = (QuicPeer, Manifest, Connection);

/// The receiving side of the running client.
pub struct Receiver {
    pub session: SessionHandle,
    /// Whose contacts may send us files.
    pub home: Home,
    /// Where files go; `None`: offers are refused.
    pub dir: Option<PathBuf>,
    pub out: Printer,
    /// Transfers in progress, for `status`.
    pub table: Table,
    active: Mutex<HashMap<[u8; 32], mpsc::Sender<Arrival>>>,
    /// Files received in this run, by root: a repeated offer is served from them.
    finished: Mutex<HashMap<[u8; 32], PathBuf>>,
}

/// What a finished receipt reports.
struct Received {
    path: PathBuf,
    sha256: String,
    downloaded: u64,
    resumed_chunks: u32,
    seconds: f64,
}

impl Receiver {
    pub fn new(
        session: SessionHandle,
        home: Home,
        dir: Option<PathBuf>,
        out: Printer,
        table: Table,
    ) -> Self {
        Receiver {
            session,
            home,
            dir,
            out,
            table,
            active: Mutex::default(),
            finished: Mutex::default(),
        }
    }

    /// Answers a file offer: accepted when `--accept-files` is set, the sender is a
    /// contact, and the offer passes its checks (a plain file name, a sane size and
    /// recipient list).
    pub async fn offer(self: Arc<Self>, call: IncomingCall) {
        let identity = self.session.identity.clone();
        let me = identity.peer_id();
        let candidates = self.session.candidates();
        let this = self.clone();
        let contacts = Contacts::load(&self.home);
        let answered = super::offer::answer(&identity, call, candidates, |sender, file, relays| {
            let active = lock(&this.active);
            let admission = Admission {
                accepting: this.dir.is_some(),
                from_contact: contacts.name_of(sender).is_some(),
                active: active.len(),
                joins: active.contains_key(&file.root),
            };
            admit(admission, sender, &me, file, relays)?;
            drop(active);
            // Before the answer leaves: the sender's connection must find the transfer.
            this.register(*sender, file.clone());
            Ok(())
        })
        .await;
        match answered {
            Ok((from, file, relays)) => {
                if file.relayed {
                    self.clone().through_relay(relays);
                }
                self.out.event(
                    "transfer_incoming",
                    json!({
                        "root": hex(&file.root), "name": file.name, "size": file.size,
                        "from": from.to_string(), "relayed": file.relayed,
                    }),
                    format!(
                        "receiving {} ({} bytes) from {}",
                        parley_proto::text::printable(&file.name),
                        file.size,
                        contacts
                            .name_of(&from)
                            .map_or_else(|| from.short(), str::to_string)
                    ),
                )
            }
            Err((from, why)) => self.out.event(
                "transfer_refused",
                json!({"from": from.map(|f| f.to_string()), "reason": why}),
                format!("refused a file offer: {why}"),
            ),
        }
    }

    /// Joins the first granted relay and takes the sender's connection through it.
    fn through_relay(self: Arc<Self>, relays: Vec<RelayGrant>) {
        let Some(grant) = relays.into_iter().next() else {
            return;
        };
        tokio::spawn(async move {
            let (endpoint, identity) = (&self.session.endpoint, &self.session.identity);
            match super::relayed::accept(endpoint, identity, &grant).await {
                Ok((peer, conn)) => self.connection(peer, conn).await,
                Err(e) => tracing::warn!(error = %e, "relayed transfer connection failed"),
            }
        });
    }

    /// Starts receiving `file` unless it already is being received.
    fn register(self: &Arc<Self>, sender: PeerId, file: FileOffer) {
        let mut active = lock(&self.active);
        if active.contains_key(&file.root) {
            return;
        }
        let (tx, rx) = mpsc::channel(8);
        active.insert(file.root, tx.clone());
        tokio::spawn(self.clone().receive(sender, file, tx, rx));
    }

    /// A transfer connection someone dialed to us: read its hello and hand it to its
    /// transfer.
    pub async fn connection(self: Arc<Self>, peer: PeerId, conn: Connection) {
        let (streams, manifest) = match hello::accept(&conn, peer).await {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(peer = %peer.short(), error = %e, "bad transfer hello");
                conn.close(2u32.into(), b"bad hello");
                return;
            }
        };
        let root = manifest.root();
        let deadline = Instant::now() + OFFER_WAIT;
        while Instant::now() < deadline {
            let tx = lock(&self.active).get(&root).cloned();
            if let Some(tx) = tx {
                let _ = tx.send((streams, manifest, conn)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        conn.close(3u32.into(), b"no such transfer");
    }

    async fn receive(
        self: Arc<Self>,
        sender: PeerId,
        file: FileOffer,
        tx: mpsc::Sender<Arrival>,
        mut rx: mpsc::Receiver<Arrival>,
    ) {
        let root = hex(&file.root);
        let started = Instant::now();
        let result = self.run(sender, &file, tx, &mut rx).await;
        lock(&self.active).remove(&file.root);
        lock(&self.table).remove(&root);
        let from = sender.to_string();
        match result {
            Ok(r) => self.out.event(
                "file_received",
                json!({
                    "root": root, "name": file.name, "size": file.size, "from": from,
                    "sha256": r.sha256, "path": r.path, "downloaded": r.downloaded,
                    "resumed_chunks": r.resumed_chunks, "seconds": r.seconds,
                }),
                format!(
                    "received {} ({} bytes, sha256 {}) from {} in {:.1} s",
                    r.path.display(),
                    file.size,
                    r.sha256,
                    sender.short(),
                    started.elapsed().as_secs_f64()
                ),
            ),
            Err(e) => self.out.event(
                "transfer_failed",
                json!({"root": root, "name": file.name, "from": from, "reason": format!("{e:#}")}),
                format!(
                    "receiving {} failed: {e:#}",
                    parley_proto::text::printable(&file.name)
                ),
            ),
        }
    }

    async fn run(
        &self,
        sender: PeerId,
        file: &FileOffer,
        tx: mpsc::Sender<Arrival>,
        rx: &mut mpsc::Receiver<Arrival>,
    ) -> Result<Received> {
        let started = Instant::now();
        let Some(dir) = self.dir.clone() else {
            bail!("not accepting files");
        };
        let allowed = |p: &PeerId| *p == sender || file.recipients.contains(p);
        // The manifest comes with the first connection (the sender's, usually).
        let (streams, manifest, conn) = loop {
            let arrival = tokio::time::timeout(FIRST_CONNECTION, rx.recv())
                .await
                .ok()
                .flatten()
                .context("nobody connected to send the file")?;
            let m = &arrival.1;
            if allowed(&arrival.0.peer)
                && m.root() == file.root
                && m.name() == file.name
                && m.size() == file.size
                && m.sender() == sender
            {
                break arrival;
            }
            arrival
                .2
                .close(4u32.into(), b"manifest does not match the offer");
        };
        let me = self.session.identity.peer_id();
        let done = lock(&self.finished).get(&file.root).cloned();
        let (store, have) = match &done {
            Some(path) => (
                Store::Source(std::fs::File::open(path)?),
                Bitfield::full(manifest.chunk_count()),
            ),
            None => link::open_receiver(&dir, &manifest)?,
        };
        let resumed_chunks = if done.is_some() { 0 } else { have.count() };
        let root = hex(&file.root);
        self.out.event(
            "transfer_receiving",
            json!({
                "root": root, "name": file.name, "size": file.size, "from": sender.to_string(),
                "resumed_chunks": resumed_chunks, "chunks": manifest.chunk_count(),
            }),
            format!(
                "receiving {}: {resumed_chunks} of {} chunks already here",
                parley_proto::text::printable(&file.name),
                manifest.chunk_count()
            ),
        );
        let swarm = Swarm::new(
            mono(),
            manifest.clone(),
            me,
            have,
            super::swarm_config(file.recipients.len()),
            rand::random(),
        );
        let (peers_tx, peers_rx) = mpsc::channel(16);
        let _ = peers_tx.send(streams).await;
        let mut conns = vec![conn];
        self.dial_others(&file.recipients, &manifest, tx);
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let run = link::run(
            swarm,
            store,
            peers_rx,
            reports_tx,
            Role::Receiver { idle: IDLE },
        );
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                Some((s, m, c)) = rx.recv() => {
                    if allowed(&s.peer) && m.root() == file.root {
                        let _ = peers_tx.send(s).await;
                        conns.push(c);
                    } else {
                        c.close(4u32.into(), b"manifest does not match the offer");
                    }
                }
                Some(report) = reports.recv() => self.report(&root, file, sender, report),
            }
        };
        // Let the last frames (our final haves) leave before the connections close.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for c in conns {
            c.close(0u32.into(), b"done");
        }
        let (swarm, store) = result?;
        if !swarm.is_complete() {
            bail!(
                "stopped with {} of {} chunks (no peer left); the partial file stays in {} and a new offer of this file resumes from it",
                swarm.have().count(),
                manifest.chunk_count(),
                dir.display()
            );
        }
        let path = match (store, done) {
            (Store::Partial(p), _) => p.finish()?,
            (Store::Finished { path, .. }, _) | (Store::Source(_), Some(path)) => path,
            (Store::Source(_), None) => bail!("internal: a receiver without its file"),
        };
        lock(&self.finished).insert(file.root, path.clone());
        let sha256 = super::sha256_file(&path).await?;
        Ok(Received {
            path,
            sha256,
            downloaded: swarm.stats().downloaded,
            resumed_chunks,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Progress on the terminal / as `transfer_progress`, and in `status`.
    fn report(&self, root: &str, file: &FileOffer, sender: PeerId, report: LinkReport) {
        match report {
            LinkReport::Progress(p) => {
                let fields = json!({
                    "root": root, "name": file.name, "size": file.size, "direction": "receive",
                    "from": sender.to_string(), "bytes": p.bytes, "chunks": p.chunks,
                    "downloaded": p.stats.downloaded, "uploaded": p.stats.uploaded, "peers": p.peers, "call_pace_bytes_per_s": super::pace::rate(),
                });
                lock(&self.table).insert(root.to_string(), fields.clone());
                let pct = if file.size == 0 {
                    100.0
                } else {
                    p.bytes as f64 * 100.0 / file.size as f64
                };
                self.out.event(
                    "transfer_progress",
                    fields,
                    format!(
                        "receiving {}: {pct:.0} % ({} peer{})",
                        parley_proto::text::printable(&file.name),
                        p.peers,
                        if p.peers == 1 { "" } else { "s" }
                    ),
                );
            }
            LinkReport::PeerDropped { peer, reason } => self.out.event(
                "transfer_peer_dropped",
                json!({"root": root, "peer": peer.to_string(), "reason": reason}),
                format!("dropped transfer peer {}: {reason}", peer.short()),
            ),
            LinkReport::PeerComplete(_) | LinkReport::PeerGone { .. } => {}
        }
    }

    /// Connects to the recipients after us in the offer's list (those before us dial
    /// us), so that the swarm runs between all of them. Their addresses come from
    /// their presence records; each is tried [`PEER_DIALS`] times, 2 s apart.
    fn dial_others(&self, recipients: &[PeerId], manifest: &Manifest, tx: mpsc::Sender<Arrival>) {
        let me = self.session.identity.peer_id();
        let Some(mine) = recipients.iter().position(|p| *p == me) else {
            return;
        };
        for &peer in &recipients[mine + 1..] {
            let (session, manifest, tx) = (self.session.clone(), manifest.clone(), tx.clone());
            tokio::spawn(async move {
                for _ in 0..PEER_DIALS {
                    if tx.is_closed() {
                        return;
                    }
                    let lookup = ClientToSupernode::Lookup(peer);
                    let found = match session.ask(&lookup, Duration::from_secs(5)).await {
                        Ok((_, SupernodeToClient::Found(r))) => r.verify(now()).ok().cloned(),
                        _ => None,
                    };
                    if let Some(record) = found {
                        let (endpoint, identity) = (&session.endpoint, &session.identity);
                        match hello::dial(endpoint, identity, peer, &record.addresses, &manifest)
                            .await
                        {
                            Ok((conn, streams)) => {
                                let _ = tx.send((streams, manifest, conn)).await;
                                return;
                            }
                            Err(e) => {
                                tracing::info!(peer = %peer.short(), error = %e, "recipient not reached")
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::Identity;

    #[test]
    fn offers_are_admitted_only_when_files_are_accepted_and_there_is_room() {
        let sender = Identity::from_seed(&[1; 32]).peer_id();
        let me = Identity::from_seed(&[2; 32]).peer_id();
        let mut file = FileOffer {
            root: [3; 32],
            name: "a.txt".into(),
            size: 10,
            recipients: vec![me],
            relayed: false,
        };
        let admit = |accepting, active, joins, file: &FileOffer| {
            let a = Admission {
                accepting,
                from_contact: true,
                active,
                joins,
            };
            admit(a, &sender, &me, file, &[])
        };
        assert_eq!(admit(true, 0, false, &file), Ok(()));
        let no = admit(false, 0, false, &file).unwrap_err();
        assert!(no.contains("--accept-files"), "{no}");
        let full = admit(true, MAX_ACTIVE, false, &file).unwrap_err();
        assert!(full.contains("already receiving 8 files"), "{full}");
        // A repeated offer of a file already arriving joins it, full or not.
        assert_eq!(admit(true, MAX_ACTIVE, true, &file), Ok(()));
        file.name = "../x".into();
        let name = admit(true, 0, false, &file).unwrap_err();
        assert!(name.contains("file name refused"), "{name}");
        file.name = "a.txt".into();
        file.relayed = true;
        let relay = admit(true, 0, false, &file).unwrap_err();
        assert!(relay.contains("none was granted"), "{relay}");
        file.relayed = false;
        let stranger = Admission {
            accepting: true,
            from_contact: false,
            active: 0,
            joins: false,
        };
        let why = super::admit(stranger, &sender, &me, &file, &[]).unwrap_err();
        assert!(why.contains("not one of your contacts"), "{why}");
    }
}
