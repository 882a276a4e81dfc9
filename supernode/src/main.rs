//! `supernode`: a Parley overlay node. See `supernode --help` and docs/operator-guide.md.

mod calls;
mod cli;
mod driver;
mod limits;
mod metrics;
mod pool;
mod relay_watch;
mod relays;
mod server;
mod stun;
mod stun_limit;
mod stun_service;

use anyhow::{Context, Result};
use clap::Parser;
use parley_proto::keyfile;
use std::sync::Arc;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<()> {
    parley_net::init_logging("info");
    let cli = cli::Cli::parse();
    if let Some(cli::Command::Id { key, create }) = cli.command {
        if let Err(e) = parley_net::print_server_id(&key, create) {
            if let keyfile::KeyFileError::Missing(path) = &e {
                anyhow::bail!(
                    "no supernode key at {p}: create one with `supernode id --create --key {p}` (a supernode started with --key {p} also creates it)",
                    p = path.display()
                );
            }
            return Err(e).context("cannot print the supernode id");
        }
        return Ok(());
    }
    let settings = cli.run.settings()?;
    let identity = keyfile::load_or_create(&settings.key)
        .with_context(|| format!("loading the supernode key {}", settings.key.display()))?;
    // The TCP tunnel presents the same identity as QUIC.
    let tunnel_identity = identity.clone();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_rx2 = shutdown_rx.clone();
    // Bound first, so that Welcome advertises it (any port: clients never derive it).
    let tunnel = parley_net::tcp_tunnel::bind(settings.tcp_listen.unwrap_or(settings.listen))
        .await
        .context("cannot bind the TCP port for clients without UDP (--tcp-listen)")?;
    let tcp = tunnel.addr;
    let tunnel_peers = parley_net::tcp_tunnel::TunnelPeers::default();
    let (bound, serve) = server::start(
        server::ServerParams {
            identity,
            listen: settings.listen,
            stun_listen: settings.stun_listen,
            stun_fallback: settings.stun_default,
            stun_alternate_ip: settings.stun_alternate_ip,
            join: settings.join,
            relays: settings.relays,
            relay_keys: settings.relay_keys,
            tcp: Some(tcp),
            tunnel_peers: tunnel_peers.clone(),
            limits: settings.limits,
        },
        shutdown_rx.clone(),
    )
    .await?;
    tunnel
        .serve(bound.quic, &tunnel_identity, tunnel_peers, shutdown_rx)
        .context("cannot serve the TCP tunnel")?;
    let metrics = match settings.metrics {
        Some(addr) => {
            let bound = parley_net::metrics_http::serve(addr, Arc::new(|| {}), shutdown_rx2)
                .await
                .context("cannot serve metrics (--metrics)")?;
            metrics::describe();
            format!(" metrics={bound}")
        }
        None => String::new(),
    };
    // One machine-readable line on stdout: scripts and tests wait for it.
    println!(
        "supernode ready id={} quic={} stun={} tcp={tcp}{metrics}",
        bound.id, bound.quic, bound.stun
    );
    tracing::info!(id = %bound.id, quic = %bound.quic, stun = %bound.stun, "supernode listening");
    parley_net::serve_until_signal(serve, shutdown_tx).await;
    Ok(())
}
