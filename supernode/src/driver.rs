//! The actor that owns the sans-IO [`Overlay`] machine.
//!
//! Everything that touches the overlay goes through [`DriverHandle`] as a message; the
//! actor feeds it to the machine, then drains transmits (each sent by its own task over
//! the connection pool) and events (which complete waiting client requests).

use crate::pool::Pool;
use parley_proto::messages::{SupernodeReply, SupernodeToSupernode};
use parley_proto::overlay::{OpId, Overlay, OverlayEvent, RpcFailure, RpcId};
use parley_proto::presence::{Contact, RecordError, SignedPresence};
use parley_proto::PeerId;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use parley_net::clock::now;

/// What a finished client operation returns.
#[derive(Debug)]
pub enum OpResult {
    Published(usize),
    Found(Option<SignedPresence>),
}

enum Command {
    Request {
        from: Contact,
        request: SupernodeToSupernode,
        reply: oneshot::Sender<SupernodeReply>,
    },
    RpcDone {
        id: RpcId,
        result: Result<SupernodeReply, RpcFailure>,
    },
    Join(Contact),
    Publish {
        record: SignedPresence,
        reply: oneshot::Sender<Result<OpResult, RecordError>>,
    },
    Lookup {
        id: PeerId,
        reply: oneshot::Sender<Result<OpResult, RecordError>>,
    },
    Known {
        n: usize,
        reply: oneshot::Sender<Vec<Contact>>,
    },
    Leave {
        reply: oneshot::Sender<HandedOver>,
    },
}

/// What a graceful leave handed over: records (one `Store` each) and `Stored` replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandedOver {
    pub records: usize,
    pub stored: usize,
}

/// A cheap, cloneable way to talk to the overlay actor.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
}

/// The actor has stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the overlay is shutting down")]
pub struct Stopped;

impl DriverHandle {
    pub async fn request(
        &self,
        from: Contact,
        request: SupernodeToSupernode,
    ) -> Result<SupernodeReply, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request {
            from,
            request,
            reply,
        })
        .await?;
        rx.await.map_err(|_| Stopped)
    }

    pub async fn join(&self, contact: Contact) -> Result<(), Stopped> {
        self.send(Command::Join(contact)).await
    }

    pub async fn publish(
        &self,
        record: SignedPresence,
    ) -> Result<Result<usize, RecordError>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish { record, reply }).await?;
        Ok(match rx.await.map_err(|_| Stopped)? {
            Ok(OpResult::Published(n)) => Ok(n),
            Ok(OpResult::Found(_)) => Ok(0),
            Err(e) => Err(e),
        })
    }

    pub async fn lookup(&self, id: PeerId) -> Result<Option<SignedPresence>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Lookup { id, reply }).await?;
        Ok(match rx.await.map_err(|_| Stopped)? {
            Ok(OpResult::Found(r)) => r,
            _ => None,
        })
    }

    pub async fn known(&self, n: usize) -> Result<Vec<Contact>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Known { n, reply }).await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Leaves the overlay gracefully ([`Overlay::leave`]): hands the records this
    /// supernode holds to the supernodes that replace it, and returns once every
    /// `Store` was answered or timed out (the overlay's `rpc_timeout`, 2 s).
    pub async fn leave(&self) -> Result<HandedOver, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Leave { reply }).await?;
        rx.await.map_err(|_| Stopped)
    }

    async fn send(&self, c: Command) -> Result<(), Stopped> {
        self.tx.send(c).await.map_err(|_| Stopped)
    }
}

type Waiter = oneshot::Sender<Result<OpResult, RecordError>>;

/// Callers waiting for the overlay: operations by id, and a leave.
#[derive(Default)]
struct Waiters {
    ops: HashMap<OpId, Waiter>,
    leave: Option<oneshot::Sender<HandedOver>>,
}

/// Starts the actor; it stops when every handle is dropped.
pub fn spawn(overlay: Overlay, pool: Pool) -> DriverHandle {
    let (tx, rx) = mpsc::channel(1024);
    let handle = DriverHandle { tx };
    tokio::spawn(run(overlay, pool, rx, handle.clone()));
    handle
}

async fn run(mut overlay: Overlay, pool: Pool, mut rx: mpsc::Receiver<Command>, me: DriverHandle) {
    let mut waiters = Waiters::default();
    // The actor holds a handle only to report RPC results; a weak sender lets it stop.
    let results = me.tx.downgrade();
    drop(me);
    loop {
        let wake = overlay.poll_timeout().map(|t| t.since(now()));
        let command = match wake {
            Some(d) => match tokio::time::timeout(d.max(Duration::from_millis(1)), rx.recv()).await
            {
                Ok(c) => c,
                Err(_) => {
                    overlay.handle_timeout(now());
                    drain(&mut overlay, &pool, &results, &mut waiters);
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(command) = command else { break };
        let t = now();
        match command {
            Command::Request {
                from,
                request,
                reply,
            } => {
                let _ = reply.send(overlay.handle_request(t, from, request));
            }
            Command::RpcDone { id, result } => overlay.handle_reply(t, id, result),
            Command::Join(contact) => overlay.join(t, contact),
            Command::Publish { record, reply } => match overlay.publish(t, record) {
                Ok(op) => {
                    waiters.ops.insert(op, reply);
                }
                Err(e) => {
                    tracing::info!(error = %e, "refused a client's record");
                    let _ = reply.send(Err(e));
                }
            },
            Command::Lookup { id, reply } => {
                let op = overlay.lookup(t, id);
                waiters.ops.insert(op, reply);
            }
            Command::Known { n, reply } => {
                let _ = reply.send(overlay.known_supernodes(n));
            }
            Command::Leave { reply } => {
                let records = overlay.leave(t);
                tracing::info!(records, "leaving the overlay: handing records over");
                waiters.leave = Some(reply);
            }
        }
        drain(&mut overlay, &pool, &results, &mut waiters);
        crate::metrics::records(overlay.stored_records());
    }
}

fn drain(
    overlay: &mut Overlay,
    pool: &Pool,
    results: &mpsc::WeakSender<Command>,
    waiters: &mut Waiters,
) {
    while let Some(rpc) = overlay.poll_transmit() {
        let pool = pool.clone();
        let Some(tx) = results.upgrade() else { return };
        tokio::spawn(async move {
            let result = pool.rpc(rpc.to, &rpc.request).await;
            let _ = tx.send(Command::RpcDone { id: rpc.id, result }).await;
        });
    }
    while let Some(event) = overlay.poll_event() {
        match event {
            OverlayEvent::Published { op, replicas } => {
                if let Some(w) = waiters.ops.remove(&op) {
                    let _ = w.send(Ok(OpResult::Published(replicas)));
                }
            }
            OverlayEvent::LookupDone { op, record, hops } => {
                tracing::debug!(hops, found = record.is_some(), "lookup finished");
                if let Some(w) = waiters.ops.remove(&op) {
                    let _ = w.send(Ok(OpResult::Found(record)));
                }
            }
            OverlayEvent::HandedOver { records, stored } => {
                tracing::info!(records, stored, "records handed over");
                if let Some(w) = waiters.leave.take() {
                    let _ = w.send(HandedOver { records, stored });
                }
            }
            OverlayEvent::RecordRefused { from, error } => {
                tracing::warn!(from = ?from.map(|c| c.addr), %error, "refused a presence record");
            }
        }
    }
}
