//! `parley send FILE ID_OR_NAME...`: describe the file in a signed manifest, offer it
//! to every recipient through call signalling, connect to each that accepts, and run
//! the swarm until every recipient holds the verified file. A recipient that cannot
//! be reached, or whose connection is lost before it has the file, is offered the file
//! again (every 3 s) until it has been out of reach for `retry_for`; its client then
//! resumes from the chunks it already verified.
//!
//! Runs inside the running client (through the control socket) or in a short-lived
//! session, like `parley call`.

use super::hello::{self, QuicPeer};
use super::link::{self, LinkReport, Role, Store};
use super::offer::{offer, Offered};
use super::relayed;
use super::{hex, lock, Table};
use crate::output::{Printer, EXIT_FAILED, EXIT_OK};
use crate::session::SessionHandle;
use anyhow::{Context, Result};
use parley_net::clock::mono;
use parley_proto::call::signal::FileOffer;
use parley_proto::transfer::manifest::ManifestBuilder;
use parley_proto::transfer::{Bitfield, Manifest, Swarm, CHUNK_SIZE};
use parley_proto::PeerId;
use quinn::Connection;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long to wait before offering again to a recipient not reached.
const RETRY_EVERY: Duration = Duration::from_secs(3);
/// How a failed direct dial is reported (the retry then goes through the relay).
const DIRECT_FAILED: &str = "direct: ";

/// Test hook (`PARLEY_TEST_NO_DIRECT=1`): every direct dial of a transfer fails, so a
/// process test can show the fallback to the relay.
fn no_direct() -> bool {
    std::env::var_os("PARLEY_TEST_NO_DIRECT").is_some_and(|v| v == "1")
}

/// What `parley send` asks for (it travels over the control socket).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SendRequest {
    /// The file (absolute, checked to be a readable regular file).
    pub file: PathBuf,
    /// Recipients: id, and the contact name it was given by, if any.
    pub recipients: Vec<(String, Option<String>)>,
    /// How long a recipient may stay out of reach before it is given up.
    pub retry_for: Duration,
    /// Test hook: the name to put in the offers instead of the file's (unchecked).
    pub offer_name: Option<String>,
    /// Only through a relay (`--relay-only`); otherwise direct, and through the relay
    /// after a direct dial failed.
    pub relay_only: bool,
}

/// Where one recipient is.
#[derive(Debug)]
enum State {
    /// Being offered the file / connected to.
    Offering,
    /// Connected; the swarm runs.
    Connected,
    /// Out of reach; offered again after [`RETRY_EVERY`].
    Waiting,
    /// Holds the verified file.
    Done,
    /// Given up.
    Failed(String),
}

struct Recipient {
    id: PeerId,
    label: String,
    state: State,
    /// When it was last connected or first offered (for `retry_for`).
    out_of_reach_since: Instant,
    conn: Option<Connection>,
    /// The next offer goes through the relay (asked for, or direct failed).
    relayed: bool,
}

/// Builds the signed manifest of `file` (named `name`), reading it chunk by chunk.
pub fn build_manifest(
    identity: &parley_proto::Identity,
    file: &std::path::Path,
    name: &str,
) -> Result<Manifest> {
    let mut f =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut builder = ManifestBuilder::new(name);
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match f.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        builder.push_chunk(&buf[..filled])?;
        if filled < buf.len() {
            break;
        }
    }
    Ok(builder.finish(identity)?)
}

/// One offer-and-connect attempt's result, for recipient `.0`.
type Attempt = (usize, Result<(Connection, QuicPeer), Offered>);

/// The sender's state while the swarm runs.
struct Sending<'a> {
    session: &'a SessionHandle,
    my_name: &'a str,
    offer: FileOffer,
    manifest: Manifest,
    root: String,
    recipients: Vec<Recipient>,
    attempts: JoinSet<Attempt>,
    retry_for: Duration,
    uploaded: u64,
    out: Printer,
    table: Option<Table>,
}

impl Sending<'_> {
    fn pending(&self) -> bool {
        self.recipients
            .iter()
            .any(|r| !matches!(r.state, State::Done | State::Failed(_)))
    }

    fn done_count(&self) -> usize {
        self.recipients
            .iter()
            .filter(|r| matches!(r.state, State::Done))
            .count()
    }

    /// Offers the file to recipient `i` after `delay`, then dials it (directly, or
    /// through the relay granted with the offer).
    fn attempt(&mut self, i: usize, delay: Duration) {
        let (session, mut file, manifest) = (
            self.session.clone(),
            self.offer.clone(),
            self.manifest.clone(),
        );
        file.relayed = self.recipients[i].relayed;
        let (to, my_name) = (self.recipients[i].id, self.my_name.to_string());
        self.attempts.spawn(async move {
            tokio::time::sleep(delay).await;
            let relayed = file.relayed;
            let result = match offer(&session, &my_name, to, file).await {
                Ok(Offered::Accepted(candidates, relays)) => {
                    let (endpoint, identity) = (&session.endpoint, &session.identity);
                    let dialed = match (relayed, relays.first()) {
                        (false, _) if no_direct() => Err("disabled (test hook)".into()),
                        (false, _) => {
                            hello::dial(endpoint, identity, to, &candidates, &manifest).await
                        }
                        (true, Some(grant)) => {
                            relayed::dial(endpoint, identity, to, grant, &manifest).await
                        }
                        (true, None) => Err("no relay was granted".into()),
                    };
                    dialed.map_err(|e| {
                        Offered::Unreachable(if relayed {
                            format!("through the relay: {e}")
                        } else {
                            format!("{DIRECT_FAILED}{e}")
                        })
                    })
                }
                Ok(other) => Err(other),
                Err(e) => Err(Offered::Unreachable(format!("{e:#}"))),
            };
            (i, result)
        });
    }

    /// Out of reach now: offered again, unless it has been so for `retry_for`.
    fn retry(&mut self, i: usize, why: String) {
        let r = &mut self.recipients[i];
        r.conn = None;
        if r.out_of_reach_since.elapsed() >= self.retry_for {
            r.state = State::Failed(why);
        } else {
            tracing::info!(recipient = %r.label, reason = %why, "offering the file again");
            r.state = State::Waiting;
            self.attempt(i, RETRY_EVERY);
        }
    }

    async fn attempted(&mut self, (i, result): Attempt, peers: &mpsc::Sender<QuicPeer>) {
        match result {
            Ok((conn, streams)) => {
                let _ = peers.send(streams).await;
                let r = &mut self.recipients[i];
                r.conn = Some(conn);
                r.state = State::Connected;
            }
            Err(Offered::Refused(why)) => self.recipients[i].state = State::Failed(why),
            Err(Offered::Unreachable(why)) => {
                // Direct failed: the next offer asks for the relay.
                if why.starts_with(DIRECT_FAILED) {
                    self.recipients[i].relayed = true;
                }
                self.retry(i, why)
            }
            Err(Offered::Accepted(..)) => self.retry(i, "no answer".into()),
        }
    }

    fn reported(&mut self, report: LinkReport) {
        let index = |s: &Self, p: &PeerId| s.recipients.iter().position(|r| r.id == *p);
        match report {
            LinkReport::Progress(p) => {
                self.uploaded = p.stats.uploaded;
                let (done, all) = (self.done_count(), self.recipients.len());
                let fields = json!({
                    "root": self.root, "name": self.manifest.name(), "size": self.manifest.size(),
                    "direction": "send", "uploaded": self.uploaded, "peers": p.peers, "call_pace_bytes_per_s": super::pace::rate(),
                    "recipients_done": done, "recipients": all,
                });
                if let Some(t) = &self.table {
                    lock(t).insert(self.root.clone(), fields.clone());
                }
                let mib = self.uploaded as f64 / (1 << 20) as f64;
                let text = format!(
                    "sending {}: {mib:.1} MiB uploaded, {done} of {all} recipients done",
                    self.manifest.name()
                );
                self.out.event("transfer_progress", fields, text);
            }
            LinkReport::PeerComplete(p) => {
                let Some(i) = index(self, &p) else { return };
                let r = &mut self.recipients[i];
                if !matches!(r.state, State::Done) {
                    r.state = State::Done;
                    self.out.event(
                        "transfer_recipient_done",
                        json!({"root": self.root, "id": r.id.to_string(), "name": r.label}),
                        format!("{} has the file", r.label),
                    );
                }
            }
            LinkReport::PeerGone {
                peer,
                complete: false,
            }
            | LinkReport::PeerDropped { peer, .. } => {
                let Some(i) = index(self, &peer) else { return };
                let r = &mut self.recipients[i];
                if matches!(r.state, State::Connected) {
                    r.out_of_reach_since = Instant::now();
                    self.retry(i, "connection lost before it had the file".into());
                }
            }
            LinkReport::PeerGone { .. } => {}
        }
    }

    fn cancel(&mut self) {
        for r in &mut self.recipients {
            if !matches!(r.state, State::Done) {
                r.state = State::Failed("cancelled".into());
            }
        }
    }

    /// `transfer_done` (exit 0) or `transfer_failed` naming who did not get the file.
    fn summary(&self, seconds: f64) -> i32 {
        let (size, name) = (self.manifest.size(), self.manifest.name());
        let failed: Vec<(&Recipient, String)> = self
            .recipients
            .iter()
            .filter_map(|r| match &r.state {
                State::Done => None,
                State::Failed(why) => Some((r, why.clone())),
                _ => Some((r, "did not get the file".into())),
            })
            .collect();
        if failed.is_empty() {
            let ratio = if size == 0 {
                0.0
            } else {
                self.uploaded as f64 / size as f64
            };
            let mbps = size as f64 / 1e6 / seconds.max(1e-3);
            let ids: Vec<String> = self.recipients.iter().map(|r| r.id.to_string()).collect();
            self.out.event(
                "transfer_done",
                json!({
                    "root": self.root, "name": name, "size": size, "seconds": seconds,
                    "uploaded": self.uploaded, "upload_ratio": ratio, "mb_per_s": mbps,
                    "recipients": ids,
                }),
                if self.uploaded == 0 && size > 0 {
                    // Nothing went from us: every recipient had it already.
                    format!("every recipient has {name} already ({size} bytes; nothing uploaded)")
                } else {
                    format!(
                        "every recipient has {name} ({size} bytes in {seconds:.1} s, {mbps:.1} MB/s; uploaded {ratio:.2}x the file)"
                    )
                },
            );
            return EXIT_OK;
        }
        let list: Vec<_> = failed
            .iter()
            .map(|(r, why)| json!({"id": r.id.to_string(), "name": r.label, "reason": why}))
            .collect();
        let names: Vec<String> = failed
            .iter()
            .map(|(r, why)| format!("{} ({why})", r.label))
            .collect();
        self.out.event(
            "transfer_failed",
            json!({"root": self.root, "name": name, "size": size, "failed": list}),
            "",
        );
        let names = names.join(", ");
        self.out
            .error(&format!("not delivered to: {names}"), EXIT_FAILED);
        EXIT_FAILED
    }
}

/// Sends the file; returns the exit code (0: every recipient holds the verified file).
pub async fn run(
    session: &SessionHandle,
    my_name: &str,
    req: SendRequest,
    table: Option<Table>,
    out: Printer,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<i32> {
    let started = Instant::now();
    let name = req
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("FILE has no file name")?;
    let (identity, path) = (session.identity.clone(), req.file.clone());
    let manifest =
        tokio::task::spawn_blocking(move || build_manifest(&identity, &path, &name)).await??;
    let mut recipients: Vec<Recipient> = Vec::new();
    for (id, contact) in &req.recipients {
        let id: PeerId = id.parse().map_err(|e| anyhow::anyhow!("{id:?}: {e}"))?;
        recipients.push(Recipient {
            id,
            label: contact.clone().unwrap_or_else(|| id.short()),
            state: State::Offering,
            out_of_reach_since: Instant::now(),
            conn: None,
            relayed: req.relay_only,
        });
    }
    let offer = FileOffer {
        root: manifest.root(),
        name: req
            .offer_name
            .clone()
            .unwrap_or_else(|| manifest.name().to_string()),
        size: manifest.size(),
        recipients: recipients.iter().map(|r| r.id).collect(),
        relayed: req.relay_only,
    };
    let labels: Vec<&str> = recipients.iter().map(|r| r.label.as_str()).collect();
    out.event(
        "transfer_started",
        json!({
            "root": hex(&manifest.root()), "name": manifest.name(), "size": manifest.size(),
            "direction": "send", "recipients": offer.recipients.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        }),
        format!(
            "sending {} ({} bytes) to {}",
            manifest.name(),
            manifest.size(),
            labels.join(", ")
        ),
    );
    let swarm = Swarm::new(
        mono(),
        manifest.clone(),
        session.identity.peer_id(),
        Bitfield::full(manifest.chunk_count()),
        super::swarm_config(offer.recipients.len()),
        rand::random(),
    );
    let source = Store::Source(std::fs::File::open(&req.file)?);
    let (peers_tx, peers_rx) = mpsc::channel::<QuicPeer>(16);
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let run = link::run(swarm, source, peers_rx, reports_tx, Role::Sender);
    tokio::pin!(run);
    tokio::pin!(cancel);
    let mut s = Sending {
        session,
        my_name,
        root: hex(&manifest.root()),
        offer,
        manifest,
        recipients,
        attempts: JoinSet::new(),
        retry_for: req.retry_for,
        uploaded: 0,
        out,
        table,
    };
    for i in 0..s.recipients.len() {
        s.attempt(i, Duration::ZERO);
    }
    let (mut cancelled, mut run_done) = (false, false);
    while s.pending() {
        tokio::select! {
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                s.cancel();
            }
            // The sender's swarm ends by itself only on a storage error.
            ended = &mut run => {
                let (swarm, _) = ended?;
                s.uploaded = swarm.stats().uploaded;
                run_done = true;
                break;
            }
            Some(Ok(attempt)) = s.attempts.join_next() => s.attempted(attempt, &peers_tx).await,
            Some(report) = reports.recv() => s.reported(report),
        }
    }
    s.attempts.abort_all();
    // No more peers: the swarm ends when the recipients have left (they leave once
    // they and their peers hold the file), or soon after anyway.
    drop(peers_tx);
    if !run_done {
        if let Ok(Ok((swarm, _))) = tokio::time::timeout(Duration::from_secs(5), &mut run).await {
            s.uploaded = swarm.stats().uploaded;
        }
    }
    for r in &s.recipients {
        if let Some(c) = &r.conn {
            c.close(0u32.into(), b"done");
        }
    }
    if let Some(t) = &s.table {
        lock(t).remove(&s.root);
    }
    Ok(s.summary(started.elapsed().as_secs_f64()))
}
