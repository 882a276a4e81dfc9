//! The phases of an `overlay-sim` run, for counting where its RPCs go.

use parley_proto::messages::SupernodeToSupernode;

/// The part of a run an RPC was sent in (for [`Stats::by_phase`](crate::world::Stats::by_phase)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Supernodes joining and settling.
    #[default]
    Join,
    /// Clients coming online and publishing.
    Publish,
    /// Nothing changing.
    Idle,
    /// After the crash or during churn, before the lookups start.
    Upset,
    /// While the lookups run (with whatever background work still goes on).
    Lookups,
}

impl Phase {
    /// How many phases there are.
    pub const COUNT: usize = 5;
    /// Every phase, in order.
    pub const ALL: [Phase; Phase::COUNT] = [
        Phase::Join,
        Phase::Publish,
        Phase::Idle,
        Phase::Upset,
        Phase::Lookups,
    ];

    /// Its name in the log.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Join => "join",
            Phase::Publish => "publish",
            Phase::Idle => "idle",
            Phase::Upset => "upset",
            Phase::Lookups => "lookups",
        }
    }
}

/// The index of a request's kind in [`Stats::by_phase`](crate::world::Stats::by_phase).
pub(crate) fn kind_index(request: &SupernodeToSupernode) -> usize {
    match request {
        SupernodeToSupernode::Ping => 0,
        SupernodeToSupernode::FindNode(_) => 1,
        SupernodeToSupernode::FindValue(_) => 2,
        SupernodeToSupernode::Store(_) => 3,
    }
}
