//! The Parley supernode as a library: what `supernode` (the binary) runs, and what a
//! promoted client (`parley online --serve`) runs in its own process.
//!
//! - [`server`]: [`server::start`] binds the QUIC endpoint and the STUN sockets and
//!   returns the future that serves clients and supernodes ([`server::ServerParams`]).
//! - [`start_with_tunnel`]: the same plus the QUIC-over-TCP fallback for clients whose
//!   UDP is blocked (`--tcp-listen`), as the binary runs it.
//! - [`relays`]: the relay directory (which relays the supernode grants to calls).
//! - [`limits`]: admission caps, timeouts and quotas (docs/security.md).
//! - [`reach`]: the reachability dial-back a client passes before it is promoted
//!   (docs/architecture.md, "Promotion").
//!
//! Everything else (the overlay actor, the call router, STUN) is internal.

mod calls;
mod driver;
pub mod limits;
mod metrics;
mod pool;
mod reach;
mod relay_watch;
pub mod relays;
pub mod server;
mod stun;
mod stun_limit;
mod stun_service;
mod upload;

pub use server::{Bound, ServerParams};

use anyhow::{Context, Result};
use std::net::SocketAddr;
use tokio::sync::watch;

/// Describes the supernode's Prometheus metrics (call once, when `--metrics` is on).
pub fn describe_metrics() {
    metrics::describe();
}

/// [`server::start`] with the TCP fallback bound on `tcp_listen` (any port: `Welcome`
/// advertises it) and served with the same identity: the binary's way to start.
/// `params.tcp` and `params.tunnel_peers` are filled in here. Returns where the server
/// listens, the bound TCP address, and the future that serves until `shutdown`.
pub async fn start_with_tunnel(
    mut params: ServerParams,
    tcp_listen: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Result<(Bound, SocketAddr, impl std::future::Future<Output = ()>)> {
    // The TCP tunnel presents the same identity as QUIC.
    let tunnel_identity = params.identity.clone();
    // Bound first, so that Welcome advertises it.
    let tunnel = parley_net::tcp_tunnel::bind(tcp_listen)
        .await
        .context(parley_net::tcp_tunnel::BIND_FAILED)?;
    let tcp = tunnel.addr;
    let tunnel_peers = parley_net::tcp_tunnel::TunnelPeers::default();
    params.tcp = Some(tcp);
    params.tunnel_peers = tunnel_peers.clone();
    let (bound, serve) = server::start(params, shutdown.clone()).await?;
    tunnel
        .serve(bound.quic, &tunnel_identity, tunnel_peers, shutdown)
        .context("cannot serve the TCP tunnel")?;
    Ok((bound, tcp, serve))
}
