//! Running one transfer over byte streams: the shell around a `Swarm`.
//!
//! Each peer is a pair of byte streams carrying length-prefixed peer messages
//! (`parley_proto::transfer::wire`; QUIC streams in the client, `tokio::io::duplex`
//! in tests). One task reads each peer's stream into a shared queue, one writes each
//! peer's outgoing frames; [`run`] owns the machine and the storage, so every protocol
//! decision is the machine's and this file only moves bytes.

use super::pace::pace;
use super::storage::{io_err, PartialFile, StorageError};
use parley_net::clock::mono;
use parley_proto::transfer::wire::{peer_frame_len, PeerMessage};
use parley_proto::transfer::{Bitfield, Swarm, SwarmEvent};
use parley_proto::PeerId;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The ALPN of a file-transfer connection between two clients.
pub const ALPN_FILE: &[u8] = b"parley-file/1";

/// Verified chunks between resume-file updates.
const RESUME_EVERY: u32 = 8;

/// Reads one peer message; `None` at a clean end of stream.
pub async fn read_message(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<PeerMessage>> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = peer_frame_len(prefix).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    PeerMessage::decode(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Where this side's chunks live.
pub enum Store {
    /// The sender's file.
    Source(File),
    /// A receiver's partial file.
    Partial(PartialFile),
    /// A receiver's file once every chunk verified: synced and renamed to its final name
    /// in place, still serving the other recipients.
    Finished { file: File, path: PathBuf },
}

impl Store {
    fn read(&self, swarm: &Swarm, index: u32) -> Result<Vec<u8>, StorageError> {
        match self {
            Store::Partial(p) => p.read_chunk(index),
            Store::Source(f) | Store::Finished { file: f, .. } => {
                let m = swarm.manifest();
                let mut buf = vec![0; m.chunk_len(index)];
                f.read_exact_at(&mut buf, m.chunk_offset(index))
                    .map_err(|source| StorageError::Io {
                        what: "reading",
                        path: m.name().into(),
                        source,
                    })?;
                Ok(buf)
            }
        }
    }

    /// A complete partial file becomes [`Store::Finished`]; anything else is kept.
    fn finish(self) -> Result<Store, StorageError> {
        let Store::Partial(p) = self else {
            return Ok(self);
        };
        let path = p.finish()?;
        let file = File::open(&path).map_err(io_err("opening", &path))?;
        Ok(Store::Finished { file, path })
    }
}

/// A peer's two streams.
pub struct PeerStreams<R, W> {
    /// Who is at the other end (proven by the connection's TLS).
    pub peer: PeerId,
    /// Its messages to us.
    pub reader: R,
    /// Ours to it.
    pub writer: W,
}

/// Which side of the transfer this is: it decides when [`run`] returns.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// The file's sender: returns once no more peers can come (the channel of new
    /// peers is closed) and every peer has left.
    Sender,
    /// A recipient: returns once it holds every chunk and every connected peer does
    /// too (it stays to serve the others until then), or after `idle` with no peer
    /// at all (incomplete: the partial file and its resume file stay for a retry).
    Receiver {
        /// How long to wait without any peer.
        idle: Duration,
    },
}

/// What [`run`] tells its owner while it runs.
#[derive(Clone, Debug)]
pub enum LinkReport {
    /// Once a second: where the transfer is.
    Progress(Progress),
    /// A connected peer now holds every chunk (by its own haves).
    PeerComplete(PeerId),
    /// A peer's streams ended; `complete` if it held every chunk by then.
    PeerGone {
        /// Who.
        peer: PeerId,
        /// It had the whole file.
        complete: bool,
    },
    /// A peer was dropped by the swarm (a bad chunk, a protocol violation).
    PeerDropped {
        /// Who.
        peer: PeerId,
        /// Why, in words.
        reason: String,
    },
}

/// A snapshot of one side of a transfer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Verified chunks held.
    pub chunks: u32,
    /// Bytes of verified chunks held.
    pub bytes: u64,
    /// The swarm's byte counters.
    pub stats: parley_proto::transfer::swarm::SwarmStats,
    /// Connected peers.
    pub peers: usize,
}

fn progress(swarm: &Swarm) -> Progress {
    let m = swarm.manifest();
    let bytes = swarm
        .have()
        .iter_ones()
        .map(|i| m.chunk_len(i) as u64)
        .sum();
    Progress {
        chunks: swarm.have().count(),
        bytes,
        stats: swarm.stats(),
        peers: swarm.peers().count(),
    }
}

/// How often [`LinkReport::Progress`] is sent.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Test hook (`PARLEY_TEST_CORRUPT_PIECES=1`): flip a byte of every piece this
/// process serves, so that process-level tests can show a bad peer being dropped.
fn corrupt_pieces() -> bool {
    std::env::var_os("PARLEY_TEST_CORRUPT_PIECES").is_some_and(|v| v == "1")
}

/// One connected peer: its outgoing queue, and which connection it is (a peer that
/// reconnects replaces its older streams, whose late end must not remove it).
struct Conn {
    out: mpsc::UnboundedSender<PeerMessage>,
    generation: u64,
}

/// Runs `swarm` with the peers that arrive on `peers` until `role` says it is done
/// (see [`Role`]), sending what happens to `reports`. Returns the machine and store.
pub async fn run<R, W>(
    mut swarm: Swarm,
    mut store: Store,
    mut peers: mpsc::Receiver<PeerStreams<R, W>>,
    reports: mpsc::UnboundedSender<LinkReport>,
    role: Role,
) -> Result<(Swarm, Store), StorageError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (in_tx, mut in_rx) = mpsc::channel::<(PeerId, u64, Option<PeerMessage>)>(64);
    let mut conns: BTreeMap<[u8; 32], Conn> = BTreeMap::new();
    let mut announced: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut generation = 0u64;
    let mut more_peers = true;
    // A recipient that already holds the file must still meet its first peer, or the
    // sender never hears (from our bitfield) that we have it.
    let mut had_peer = false;
    let mut idle_since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let corrupt = corrupt_pieces();
    let mut since_resume = 0;
    loop {
        while let Some(ev) = swarm.poll_event() {
            match ev {
                SwarmEvent::ChunkVerified { index, data } => {
                    if let Store::Partial(p) = &store {
                        p.write_chunk(index, &data)?;
                        since_resume += 1;
                        if since_resume >= RESUME_EVERY {
                            p.save_resume(swarm.have())?;
                            since_resume = 0;
                        }
                    }
                }
                SwarmEvent::ReadChunk { peer, index } => {
                    let data = store.read(&swarm, index)?;
                    swarm.serve_chunk(mono(), peer, index, data);
                }
                SwarmEvent::PeerDropped { peer, reason } => {
                    tracing::warn!(peer = %peer.short(), %reason, "transfer peer dropped");
                    conns.remove(&peer.to_bytes());
                    let reason = reason.to_string();
                    let _ = reports.send(LinkReport::PeerDropped { peer, reason });
                }
                SwarmEvent::LocalChunkBad { index } => {
                    tracing::warn!(index, "stored chunk does not verify; fetching it again");
                }
                SwarmEvent::Complete => {}
            }
        }
        // The file is in place under its name before our last `have` leaves: a sender
        // returns when every recipient has announced every chunk, and the file must
        // be there by then.
        if swarm.is_complete() && matches!(store, Store::Partial(_)) {
            store = store.finish()?;
        }
        while let Some(t) = swarm.poll_transmit() {
            if let Some(c) = conns.get(&t.peer.to_bytes()) {
                let _ = c.out.send(t.msg);
            }
        }
        for peer in swarm.peers().copied().collect::<Vec<_>>() {
            if swarm.peer_complete(&peer) && announced.insert(peer.to_bytes()) {
                let _ = reports.send(LinkReport::PeerComplete(peer));
            }
        }
        if !conns.is_empty() {
            idle_since = tokio::time::Instant::now();
        }
        let done = match role {
            Role::Sender => !more_peers && conns.is_empty(),
            Role::Receiver { idle } => {
                // The sender holds everything (though, super-seeding, it shows less).
                let origin = swarm.manifest().sender();
                let served = |p: &PeerId| *p == origin || swarm.peer_complete(p);
                (swarm.is_complete() && had_peer && swarm.peers().all(served))
                    || idle_since.elapsed() >= idle
            }
        };
        if done {
            if let Store::Partial(p) = &store {
                p.save_resume(swarm.have())?;
            }
            let _ = reports.send(LinkReport::Progress(progress(&swarm)));
            // Let the writers flush what is queued before the streams close.
            tokio::task::yield_now().await;
            return Ok((swarm, store));
        }
        let wait = swarm
            .poll_timeout()
            .map_or(Duration::from_secs(1), |t| t.since(mono()))
            .min(Duration::from_secs(1));
        tokio::select! {
            got = in_rx.recv() => match got {
                Some((peer, g, msg)) if conns.get(&peer.to_bytes()).is_some_and(|c| c.generation == g) => {
                    match msg {
                        Some(msg) => swarm.handle_message(mono(), peer, msg),
                        None => {
                            let complete = swarm.peer_complete(&peer);
                            swarm.remove_peer(mono(), &peer);
                            conns.remove(&peer.to_bytes());
                            let _ = reports.send(LinkReport::PeerGone { peer, complete });
                        }
                    }
                }
                // From streams that were replaced, or of a dropped peer.
                Some(_) => {}
                None => {}
            },
            new = peers.recv(), if more_peers => match new {
                Some(streams) => {
                    generation += 1;
                    let peer = streams.peer;
                    if conns.remove(&peer.to_bytes()).is_some() {
                        // Reconnected: the old streams are gone as far as we care.
                        swarm.remove_peer(mono(), &peer);
                    }
                    match swarm.add_peer(mono(), peer) {
                        Ok(()) => {
                            had_peer = true;
                            let out = spawn_streams(streams, generation, in_tx.clone(), corrupt);
                            conns.insert(peer.to_bytes(), Conn { out, generation });
                        }
                        Err(e) => tracing::info!(peer = %peer.short(), error = %e, "transfer peer refused"),
                    }
                }
                None => more_peers = false,
            },
            _ = tick.tick() => {
                let _ = reports.send(LinkReport::Progress(progress(&swarm)));
            }
            _ = tokio::time::sleep(wait) => swarm.handle_timeout(mono()),
        }
    }
}

/// Starts a peer's reader and writer tasks; returns its outgoing queue.
fn spawn_streams<R, W>(
    streams: PeerStreams<R, W>,
    generation: u64,
    tx: mpsc::Sender<(PeerId, u64, Option<PeerMessage>)>,
    corrupt: bool,
) -> mpsc::UnboundedSender<PeerMessage>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let PeerStreams {
        peer,
        mut reader,
        mut writer,
    } = streams;
    tokio::spawn(async move {
        loop {
            let msg = read_message(&mut reader).await.ok().flatten();
            if let Some(PeerMessage::Piece { data, .. }) = &msg {
                pace(data.len()).await;
            }
            let end = msg.is_none();
            if tx.send((peer, generation, msg)).await.is_err() || end {
                return;
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<PeerMessage>();
    tokio::spawn(async move {
        while let Some(mut msg) = out_rx.recv().await {
            if let PeerMessage::Piece { data, .. } = &mut msg {
                pace(data.len()).await;
                if corrupt {
                    data[0] ^= 0xff;
                }
            }
            if writer.write_all(&msg.encode_frame()).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    out_tx
}

/// A receiver's starting point: the partial file and the chunks it verifiably holds.
pub fn open_receiver(
    dir: &std::path::Path,
    manifest: &parley_proto::transfer::Manifest,
) -> Result<(Store, Bitfield), StorageError> {
    let (p, have) = PartialFile::open(dir, manifest)?;
    Ok((Store::Partial(p), have))
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
