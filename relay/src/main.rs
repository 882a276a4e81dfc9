//! `relay`: a Parley media relay. See `relay --help` and docs/relay.md.

mod cli;

use anyhow::{Context, Result};
use clap::Parser;
use parley_proto::keyfile;
use parley_relay::server::{self, RelayParams};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    parley_net::logging::exit_status(run().await)
}

async fn run() -> Result<()> {
    parley_net::init_logging("info");
    let cli = cli::Cli::parse();
    if let Some(cli::Command::Id { key }) = cli.command {
        parley_net::print_server_id(&key, true)?;
        return Ok(());
    }
    let settings = cli.run.settings()?;
    let identity = keyfile::load_or_create(&settings.key)
        .with_context(|| format!("loading the relay key {}", settings.key.display()))?;
    // The TCP tunnel presents the same identity as QUIC.
    let tunnel_identity = identity.clone();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_rx2 = shutdown_rx.clone();
    // Bound first, so that load reports advertise it (any port: clients never derive it).
    let tunnel = parley_net::tcp_tunnel::bind(settings.tcp_listen.unwrap_or(settings.listen))
        .await
        .context(parley_net::tcp_tunnel::BIND_FAILED)?;
    let tcp = tunnel.addr;
    let tunnel_peers = parley_net::tcp_tunnel::TunnelPeers::default();
    let (bound, serve) = server::start(
        RelayParams {
            identity,
            listen: settings.listen,
            trusted: settings.trust,
            config: settings.limits,
            supernodes: settings.supernodes,
            advertise: settings.advertise,
            tcp: Some(tcp),
            data_listen: settings.data_listen,
            data_threads: settings.data_threads,
            max_joins_per_ip: settings.max_joins_per_ip,
            wall_clock: None,
            tunnel_peers: tunnel_peers.clone(),
        },
        shutdown_rx.clone(),
    )
    .await
    .context("cannot start the relay's QUIC socket (--listen)")?;
    tunnel
        .serve(bound.quic, &tunnel_identity, tunnel_peers, shutdown_rx)
        .context("cannot serve the TCP tunnel")?;
    let metrics = match settings.metrics {
        Some(addr) => {
            let relay = bound.clone();
            let refresh = std::sync::Arc::new(move || parley_relay::metrics::observe(&relay));
            let at = parley_net::metrics_http::serve(addr, refresh, shutdown_rx2)
                .await
                .context("cannot serve metrics (--metrics)")?;
            parley_relay::metrics::observe(&bound);
            Some(at)
        }
        None => None,
    };
    let metrics_field = metrics.map(|a| format!(" metrics={a}")).unwrap_or_default();
    // One machine-readable line on stdout: scripts and tests wait for it.
    println!(
        "relay ready id={} quic={} tcp={tcp} data={}{metrics_field}",
        bound.id, bound.quic, bound.data
    );
    // The same fields in the log as on the ready line (a log shipped elsewhere has them).
    tracing::info!(id = %bound.id, quic = %bound.quic, tcp = %tcp, data = %bound.data,
        metrics = ?metrics, "relay listening");
    parley_net::serve_until_signal(serve, shutdown_tx).await;
    Ok(())
}
