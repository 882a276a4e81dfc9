//! `supernode`: a Parley overlay node. See `supernode --help` and docs/operator-guide.md.

mod cli;

use anyhow::{Context, Result};
use clap::Parser;
use parley_proto::keyfile;
use parley_supernode::ServerParams;
use std::sync::Arc;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    parley_net::logging::exit_status(run().await)
}

async fn run() -> Result<()> {
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
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let params = ServerParams {
        identity,
        listen: settings.listen,
        stun_listen: settings.stun_listen,
        stun_fallback: settings.stun_default,
        stun_alternate_port: settings.stun_alternate_port,
        stun_alternate_ip: settings.stun_alternate_ip,
        join: settings.join,
        relays: settings.relays,
        relay_keys: settings.relay_keys,
        tcp: None,
        tunnel_peers: Default::default(),
        limits: settings.limits,
        public_ip: settings.public_ip,
    };
    let tcp_listen = settings.tcp_listen.unwrap_or(settings.listen);
    let (bound, tcp, serve) =
        parley_supernode::start_with_tunnel(params, tcp_listen, shutdown_rx.clone()).await?;
    let metrics = match settings.metrics {
        Some(addr) => {
            let bound = parley_net::metrics_http::serve(addr, Arc::new(|| {}), shutdown_rx)
                .await
                .context("cannot serve metrics (--metrics)")?;
            parley_supernode::describe_metrics();
            Some(bound)
        }
        None => None,
    };
    let stun_alternate = bound
        .stun_alternate
        .map(|a| format!(" stun_alternate={a}"))
        .unwrap_or_default();
    let public_ip = settings
        .public_ip
        .map(|ip| format!(" public_ip={ip}"))
        .unwrap_or_default();
    let metrics_field = metrics.map(|a| format!(" metrics={a}")).unwrap_or_default();
    // One machine-readable line on stdout: scripts and tests wait for it.
    println!(
        "supernode ready id={} quic={} stun={}{stun_alternate} tcp={tcp}{metrics_field}{public_ip} position={}",
        bound.id, bound.quic, bound.stun, bound.position
    );
    // The same fields in the log as on the ready line (a log shipped elsewhere has them).
    tracing::info!(
        id = %bound.id,
        quic = %bound.quic,
        stun = %bound.stun,
        stun_alternate = ?bound.stun_alternate,
        tcp = %tcp,
        metrics = ?metrics,
        public_ip = ?settings.public_ip,
        position = %bound.position,
        "supernode listening"
    );
    parley_net::serve_until_signal(serve, shutdown_tx).await;
    Ok(())
}
