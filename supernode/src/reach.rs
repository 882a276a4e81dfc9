//! The supernode's side of the reachability dial-back (issue 10; the protocol and its
//! decisions are `parley_proto::reach`).
//!
//! - A client asks ([`DialBack`] on its attachment): checked by [`ReachGuard`] (only
//!   its own observed IP, per-IP quota; never over the TCP tunnel, whose client has no
//!   UDP), then ordered from another supernode ([`probers`]: a different network first),
//!   trying up to [`MAX_PROBERS`]. This supernode never dials the client itself.
//! - Another supernode orders a probe ([`ProbeOrder`] on an overlay connection): checked
//!   by the target IP's quota, then one QUIC dial (ALPN `parley-probe/1`, the client's
//!   serving key pinned) carrying the nonce, answered with the nonce.

use crate::driver::DriverHandle;
use crate::pool::Pool;
use parley_net::clock::mono;
use parley_net::{dial, read_frame, request, send_frame, NetError};
use parley_proto::messages::MAX_CONTACTS;
use parley_proto::presence::Contact;
use parley_proto::reach::{
    probers, DialBack, Probe, ProbeAck, ProbeOrder, ProbeReply, ReachGuard, ReachLimits, ALPN_PROBE,
};
use parley_proto::Identity;
use quinn::Endpoint;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most supernodes asked to probe for one dial-back.
pub const MAX_PROBERS: usize = 3;
/// How long a probe (dial, nonce, answer) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long an ordered probe may take, as the asking supernode waits for it.
const ORDER_TIMEOUT: Duration = Duration::from_secs(6);

/// Dial-backs: what the server's stream handlers call.
#[derive(Clone)]
pub struct Reach {
    guard: Arc<Mutex<ReachGuard>>,
    me: Contact,
    identity: Identity,
    endpoint: Endpoint,
    pool: Pool,
    driver: DriverHandle,
}

fn failed(why: impl std::fmt::Display) -> ProbeReply {
    ProbeReply::Failed(why.to_string())
}

impl Reach {
    pub fn new(
        me: Contact,
        identity: Identity,
        endpoint: Endpoint,
        pool: Pool,
        driver: DriverHandle,
    ) -> Reach {
        Reach {
            guard: Arc::new(Mutex::new(ReachGuard::new(ReachLimits::default()))),
            me,
            identity,
            endpoint,
            pool,
            driver,
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ReachGuard> {
        self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client seen at `observed` (`tunnelled`: over the TCP fallback) asks for `req`.
    pub async fn dial_back(
        &self,
        observed: SocketAddr,
        tunnelled: bool,
        req: DialBack,
    ) -> ProbeReply {
        if tunnelled {
            return failed("you reach this supernode over TCP: your UDP is blocked, so nobody can dial you back");
        }
        if let Err(refusal) = self.guard().check_request(mono(), observed, &req) {
            return ProbeReply::Refused(refusal);
        }
        let Ok(known) = self.driver.known(MAX_CONTACTS).await else {
            return failed("the supernode is shutting down");
        };
        let mut last = failed("this supernode knows no other supernode to probe from");
        for prober in probers(&self.me, observed.ip(), &known)
            .into_iter()
            .take(MAX_PROBERS)
        {
            last = match self.order(prober, req).await {
                Ok(reply @ ProbeReply::Probed { .. }) => return reply,
                Ok(other) => other,
                Err(e) => failed(format!("supernode {} did not answer: {e}", prober.addr)),
            };
            tracing::debug!(prober = %prober.addr, reply = ?last, "dial-back probe failed");
        }
        last
    }

    async fn order(&self, prober: Contact, req: DialBack) -> Result<ProbeReply, NetError> {
        let exchange = async {
            let (mut send, mut recv) = self.pool.open(prober).await?;
            send_frame(&mut send, &ProbeOrder { dial: req }).await?;
            send.finish()?;
            read_frame::<ProbeReply>(&mut recv).await
        };
        tokio::time::timeout(ORDER_TIMEOUT, exchange)
            .await
            .map_err(|_| NetError::Timeout(ORDER_TIMEOUT))?
    }

    /// Another supernode orders a probe.
    pub async fn probe(&self, order: ProbeOrder) -> ProbeReply {
        if let Err(refusal) = self.guard().check_order(mono(), &order) {
            return ProbeReply::Refused(refusal);
        }
        let DialBack { addr, key, nonce } = order.dial;
        let exchange = async {
            let (conn, _) = dial(
                &self.endpoint,
                &self.identity,
                addr,
                ALPN_PROBE,
                Some(key),
                PROBE_TIMEOUT,
            )
            .await?;
            let ack = request::<Probe, ProbeAck>(&conn, &Probe { nonce }, PROBE_TIMEOUT).await;
            conn.close(0u32.into(), b"probe done");
            ack
        };
        match exchange.await {
            Ok(ack) if ack.nonce == nonce => ProbeReply::Probed { prober: self.me.id },
            Ok(_) => failed(format!("{addr} answered the probe with another nonce")),
            Err(e) => failed(format!("probe to {addr} failed: {e}")),
        }
    }
}

#[cfg(test)]
#[path = "reach_tests.rs"]
mod tests;
