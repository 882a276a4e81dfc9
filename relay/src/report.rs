//! Load reports: every [`REPORT_INTERVAL`] the relay tells each configured supernode
//! how busy it is, so supernodes can hand out tokens for relays with room.
//!
//! Reports go over a connection the relay dials itself (ALPN `parley-relay-report/1`),
//! so a relay behind a firewall that only allows outbound traffic still reports. The
//! connection is kept and redialed when it fails; failures are logged once per streak.

use parley_net::{dial, request, NetError};
use parley_proto::relay::messages::{RelayToSupernode, SupernodeToRelay};
use parley_proto::relay::{RelayLoad, ALPN_RELAY_REPORT};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// How often a relay reports its load.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
const REPORT_TIMEOUT: Duration = Duration::from_secs(4);

/// Reports to one supernode.
pub(crate) struct Reporter {
    pub endpoint: Endpoint,
    pub identity: Identity,
    /// The supernodes whose tokens this relay accepts: a supernode outside this list
    /// gets no reports, so it never hands this relay out (its tokens would be refused).
    pub trusted: Vec<PeerId>,
    /// `HOST:PORT` of the supernode.
    pub target: String,
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("cannot resolve: {0}")]
    Resolve(std::io::Error),
    #[error("resolves to no address")]
    NoAddress,
    #[error("the supernode there ({0}) is not in --trust: not reporting to it")]
    Untrusted(PeerId),
    #[error(transparent)]
    Net(#[from] NetError),
}

impl Reporter {
    /// Reports `load()` every [`REPORT_INTERVAL`] until `shutdown` turns true.
    pub(crate) async fn run(
        self,
        load: impl Fn() -> RelayLoad,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut conn: Option<Connection> = None;
        let mut failing = false;
        let mut tick = tokio::time::interval(REPORT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            // A report in flight when the relay stops is abandoned, not logged as failed.
            let result = tokio::select! {
                _ = shutdown.changed() => return,
                result = self.report(&mut conn, load()) => result,
            };
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(supernode = %self.target, "load reports reach the supernode again");
                }
                Ok(()) => tracing::trace!(supernode = %self.target, "load reported"),
                Err(e) => {
                    conn = None;
                    if !failing {
                        failing = true;
                        tracing::warn!(supernode = %self.target, error = %e, "cannot report load; will keep trying");
                    }
                }
            }
        }
    }

    async fn report(
        &self,
        conn: &mut Option<Connection>,
        load: RelayLoad,
    ) -> Result<(), ReportError> {
        let live = match conn.take() {
            Some(c) if c.close_reason().is_none() => c,
            _ => {
                let addr = self.resolve().await?;
                let (c, supernode) = dial(
                    &self.endpoint,
                    &self.identity,
                    addr,
                    ALPN_RELAY_REPORT,
                    None,
                    REPORT_TIMEOUT,
                )
                .await?;
                if !self.trusted.contains(&supernode) {
                    c.close(0u32.into(), b"not a trusted supernode");
                    return Err(ReportError::Untrusted(supernode));
                }
                c
            }
        };
        let SupernodeToRelay::Ack =
            request::<_, SupernodeToRelay>(&live, &RelayToSupernode::Report(load), REPORT_TIMEOUT)
                .await?;
        *conn = Some(live);
        Ok(())
    }

    async fn resolve(&self) -> Result<SocketAddr, ReportError> {
        tokio::net::lookup_host(&self.target)
            .await
            .map_err(ReportError::Resolve)?
            .next()
            .ok_or(ReportError::NoAddress)
    }
}
