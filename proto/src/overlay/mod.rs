//! The supernode overlay: a Kademlia-style DHT over supernodes, as sans-IO state machines.
//!
//! Every supernode runs one [`Overlay`]. It keeps a [`routing::RoutingTable`] of other
//! supernodes, a [`store::RecordStore`] of signed presence records, and drives
//! iterative [`lookup::Lookup`]s. It never touches a socket or a clock: the shell
//! feeds it requests, replies and the time, and carries out the [`OutgoingRpc`]s it
//! hands back from [`Overlay::poll_transmit`]. RPC deadlines live inside the machine,
//! so a lost message needs no special handling by the shell (or by a simulation).
//!
//! Key facts the rest of the system relies on:
//! - A supernode's position is `contact.node_id()`: its key's hash with a prefix
//!   from the IP it is reached at (BEP 42, see [`position`]), so nobody can put a
//!   supernode next to a key without holding and answering at an address whose
//!   prefix lands there. A record's key is `record.id.record_key()`, the hash of
//!   the client's key alone.
//! - A record is stored on the publishing supernode and on the `k` closest
//!   supernodes an iterative `FIND_NODE` finds. Within every `republish_interval`
//!   the holders that count themselves among the `k` closest push it again to the
//!   `k` closest they can find, closest holder first; a holder that receives the same
//!   record from another meanwhile skips its turn. So replicas lost with dead
//!   supernodes are replaced, at about one republication per record per interval.
//! - A supernode new to a holder's table that falls among the `k` closest it knows
//!   to a record's key gets the record from one holder (the closest of the others),
//!   so replicas follow joins at a cost proportional to joins; in an overlay of at
//!   most `k + 1` supernodes every one holds every record.
//! - A lookup that misses locally asks the `k` closest supernodes it can find. One
//!   that finds the routing table empty while a join is on its way (or in the first
//!   `rpc_timeout` after start) waits for a first peer instead of failing at once.
//! - A supernode that leaves gracefully ([`Overlay::leave`]) hands each record it is
//!   a holder of (among the `k` closest it knows) to the supernode that replaces it
//!   among them: the `k`-th closest of the others. One `Store` per record, no lookup.
//! - Every record accepted from the network is verified (signature, limits, expiry)
//!   and must supersede the one held, so replaying an old record cannot roll a user
//!   back. A supernode holds at most [`store::MAX_RECORDS`] records; beyond that,
//!   `Store`s of new keys are refused as `Overloaded`.

mod bucket_set;
mod deadlines;
pub mod diversity;
mod in_flight;
pub mod lookup;
mod node;
pub mod position;
pub mod routing;
pub mod store;
#[cfg(test)]
mod tests;
pub mod verified;

pub use node::Overlay;
pub use verified::{VerifiedRecords, Verifier};

use crate::messages::SupernodeToSupernode;
use crate::presence::{Contact, RecordError, SignedPresence};
use std::time::Duration;

/// Maps keyed by what this supernode chose or hashed itself (its own RPC and
/// operation ids, a lookup's contacts) hash with foldhash rather than SipHash:
/// they are touched on every RPC, and nobody else can choose their keys to collide
/// (a lookup's contacts are bounded by its candidate cap, not the supernode).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Tunables of the overlay. The defaults suit a public network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayConfig {
    /// Bucket size and replication factor: how many contacts a bucket holds, how
    /// many supernodes store each record, and how many closest nodes a lookup must
    /// hear from before it ends. Values below 1 are treated as 1.
    pub k: usize,
    /// How many RPCs one lookup keeps in flight at once on each of its paths. Values
    /// below 1 are treated as 1.
    pub alpha: usize,
    /// How many disjoint paths each lookup runs (S/Kademlia's `d`; see
    /// [`lookup`]): colluding supernodes that name only each other capture the paths
    /// they are asked on, not the others. 1 is plain Kademlia. Values below 1 are
    /// treated as 1, above [`lookup::MAX_PATHS`] (8) as 8.
    pub disjoint_paths: usize,
    /// How many disjoint paths a caller's publication runs to find the `k` closest
    /// supernodes to store on (republication always runs one, see `node`). Fewer
    /// than `disjoint_paths` trades the spread of a publication's stores among
    /// polluted routing tables for RPCs: each path costs about `k` more. Lookups of
    /// records, the join and bucket refreshes still run `disjoint_paths`. Values
    /// below 1 are treated as 1, above [`lookup::MAX_PATHS`] as 8.
    pub publish_paths: usize,
    /// How long an RPC may go unanswered before it counts as failed.
    pub rpc_timeout: Duration,
    /// How often a holder pushes each record it holds back out to the `k` closest
    /// supernodes, so replicas lost to churn are replaced.
    pub republish_interval: Duration,
    /// A bucket that saw no lookup for this long is refreshed by a lookup of a
    /// random id in its range.
    pub refresh_interval: Duration,
    /// Limit how many supernodes of one network the routing table admits (see
    /// [`diversity`]), and, with `lookup_diversity`, how many candidates of one
    /// network a lookup holds. On by default; off only to measure what it buys.
    pub ip_diversity: bool,
    /// Limit how many candidates of one network a lookup holds, so Sybils from a
    /// few networks cannot fill a publication's `k` closest or a value lookup's
    /// holders (see [`lookup`]; needs `ip_diversity`). On by default; off only to
    /// measure what it buys.
    pub lookup_diversity: bool,
}

impl Default for OverlayConfig {
    fn default() -> OverlayConfig {
        OverlayConfig {
            k: 20,
            alpha: 3,
            disjoint_paths: 3,
            publish_paths: 3,
            rpc_timeout: Duration::from_secs(2),
            // Publishers refresh their records well within this (see
            // `attach::AttachConfig::republish_interval`), and each refresh postpones
            // every holder's turn, so holders republish only records whose publisher
            // went quiet: background traffic grows with changes, not with records.
            republish_interval: Duration::from_secs(30 * 60),
            refresh_interval: Duration::from_secs(15 * 60),
            ip_diversity: true,
            lookup_diversity: true,
        }
    }
}

/// Names one RPC handed out by [`Overlay::poll_transmit`], to match its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RpcId(pub u64);

/// Names one publish or lookup started by the caller, to match its completion event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Why an RPC produced no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcFailure {
    /// No reply in time.
    Timeout,
    /// The shell could not connect, or the stream failed.
    Unreachable,
}

/// An RPC for the shell to send: open a stream to `to`, send `request`, and report
/// the reply (or the failure) with [`Overlay::handle_reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingRpc {
    /// Pass back to [`Overlay::handle_reply`].
    pub id: RpcId,
    /// The supernode to ask.
    pub to: Contact,
    /// What to ask.
    pub request: SupernodeToSupernode,
}

/// Something the overlay reports to its shell.
#[derive(Debug, PartialEq, Eq)]
pub enum OverlayEvent {
    /// A [`Overlay::publish`] finished.
    Published {
        /// The operation.
        op: OpId,
        /// Supernodes that hold the record now: every `Stored` reply, plus 1 for the
        /// local copy.
        replicas: usize,
    },
    /// A [`Overlay::lookup`] finished.
    LookupDone {
        /// The operation.
        op: OpId,
        /// The record, if a live, correctly signed one was found.
        record: Option<SignedPresence>,
        /// How deep the answer came from: 0 when the local store had it; otherwise
        /// the depth of the supernode that returned the record, where supernodes
        /// from our own routing table are depth 1 and a supernode first named in a
        /// reply from a depth-`d` supernode is depth `d + 1`. It counts sequential
        /// round trips, not messages. For a lookup that found nothing, the deepest
        /// supernode that answered.
        hops: usize,
    },
    /// A graceful [`Overlay::leave`] is over: every hand-over `Store` was answered
    /// or timed out (so at most `rpc_timeout` after the call). The shell may close
    /// its connections now.
    HandedOver {
        /// Records handed over (one `Store` each).
        records: usize,
        /// Of those, `Stored` replies.
        stored: usize,
    },
    /// A record from the network failed verification or was older than the one
    /// held. For logging; the overlay has already refused it.
    RecordRefused {
        /// The supernode that sent it, if known.
        from: Option<Contact>,
        /// What was wrong with it.
        error: RecordError,
    },
}
