//! `supernode`: a Parley overlay node. See `supernode --help` and docs/operator-guide.md.

mod calls;
mod cli;
mod driver;
mod pool;
mod relay_watch;
mod relays;
mod server;
mod stun;

use anyhow::{Context, Result};
use clap::Parser;
use parley_proto::keyfile;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    if let Some(cli::Command::Id { key }) = cli.command {
        let identity = keyfile::load_or_create(&key)?;
        println!("{}", identity.peer_id());
        return Ok(());
    }
    let settings = cli.run.settings()?;
    let identity = keyfile::load_or_create(&settings.key)
        .with_context(|| format!("loading the supernode key {}", settings.key.display()))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (bound, serve) = server::start(
        server::ServerParams {
            identity,
            listen: settings.listen,
            stun_listen: settings.stun_listen,
            join: settings.join,
            relays: settings.relays,
        },
        shutdown_rx,
    )
    .await?;
    // One machine-readable line on stdout: scripts and tests wait for it.
    println!(
        "supernode ready id={} quic={} stun={}",
        bound.id, bound.quic, bound.stun
    );
    tracing::info!(id = %bound.id, quic = %bound.quic, stun = %bound.stun, "supernode listening");
    let server = tokio::spawn(serve);
    parley_net::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    Ok(())
}
