//! `parley`: the Parley desktop client. See `parley --help` and docs/user-guide.md.

mod call;
mod cli;
mod home;
mod lookup;
mod nat;
mod online;
mod output;
mod render;
mod session;
mod supernode_link;

use anyhow::{Context, Result};
use call::place::CallOutcome;
use clap::Parser;
use cli::{Cli, Command, IdCommand};
use home::Home;
use output::Printer;
use parley_proto::{keyfile, Identity};
use session::ClientSession;
use std::net::SocketAddr;
use std::time::Duration;

fn main() {
    parley_net::init_logging("warn");
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let home = Home::resolve(cli.home)?;
    match cli.command {
        Command::Id {
            command: IdCommand::New { name },
        } => {
            if name.len() > parley_proto::presence::MAX_DISPLAY_NAME {
                anyhow::bail!(
                    "the name is longer than {} bytes",
                    parley_proto::presence::MAX_DISPLAY_NAME
                );
            }
            let identity = Identity::generate();
            keyfile::create(&home.key_path(), &identity)?;
            home.set_display_name(&name)?;
            println!("{}", identity.peer_id());
            eprintln!("new identity saved in {}", home.key_path().display());
            Ok(0)
        }
        Command::Id {
            command: IdCommand::Show,
        } => {
            let identity = keyfile::load(&home.key_path())?;
            println!("{}", identity.peer_id());
            Ok(0)
        }
        Command::Online {
            supernodes,
            auto_answer,
            json,
            call,
        } => {
            let identity = keyfile::load(&home.key_path())?;
            let (endpoint, nat) = open_endpoint(&identity, &home, &supernodes).await?;
            let opts = call.options(Duration::from_secs(30));
            let out = Printer { json };
            let session =
                ClientSession::start(&home, identity, endpoint, &supernodes, nat, out).await?;
            online::run(session, opts, auto_answer, out).await?;
            Ok(0)
        }
        Command::Nat { supernodes, json } => {
            let addrs = supernode_link::resolve_all(&supernodes).await?;
            if addrs.len() < 2 {
                anyhow::bail!(
                    "NAT discovery needs two supernodes on different IPs: pass --supernode twice"
                );
            }
            let (_socket, report) = nat::bind_and_detect(&addrs).await?;
            let report = report.context("NAT discovery failed")?;
            let mapped = report.mapped.map(|m| m.to_string());
            Printer { json }.event(
                "nat",
                serde_json::json!({"nat": render::nat(report.nat), "mapped": mapped}),
                format!(
                    "NAT type: {}\nmapped address: {}",
                    render::nat(report.nat),
                    mapped.as_deref().unwrap_or("(none)")
                ),
            );
            Ok(0)
        }
        Command::Call {
            id,
            supernodes,
            json,
            ring_timeout,
            call,
        } => {
            // A mistyped id is an error before anything goes on the network.
            id.parse::<parley_proto::PeerId>()
                .map_err(|e| anyhow::anyhow!("{id:?}: {e}"))?;
            let identity = keyfile::load(&home.key_path())?;
            let (endpoint, nat) = open_endpoint(&identity, &home, &supernodes).await?;
            let out = Printer { json };
            let opts = call.options(Duration::from_secs(ring_timeout));
            let mut session =
                ClientSession::start(&home, identity, endpoint, &supernodes, nat, out).await?;
            let outcome = call::place::run(&mut session, &home, &id, &opts, out).await;
            session.stop().await;
            Ok(match outcome? {
                CallOutcome::Completed(stats) => {
                    out.event(
                        "call_end",
                        stats.to_json(),
                        format!("call ended ({}): {}", stats.ended_by, stats.status_line()),
                    );
                    0
                }
                CallOutcome::NotConnected => 3,
                CallOutcome::NotFound => lookup::NOT_FOUND_EXIT,
            })
        }
        Command::Devices => {
            let devices = parley_audio::list_devices()?;
            if devices.is_empty() {
                println!("no sound devices found; use --input FILE.wav and --output FILE.wav");
            }
            for d in devices {
                let dir = match (d.is_input, d.is_output) {
                    (true, true) => "in/out",
                    (true, false) => "in",
                    (false, true) => "out",
                    _ => "-",
                };
                println!(
                    "{:<7} {}{}",
                    dir,
                    d.name,
                    if d.default { " (default)" } else { "" }
                );
            }
            Ok(0)
        }
        Command::Lookup {
            id,
            supernodes,
            json,
        } => {
            // Looking someone up needs no identity of our own; use a throwaway key if none.
            let identity = keyfile::load(&home.key_path()).unwrap_or_else(|_| Identity::generate());
            let endpoint = client_endpoint(&identity)?;
            match lookup::run(&home, identity, endpoint, &id, &supernodes, json).await? {
                lookup::Outcome::Found => Ok(0),
                lookup::Outcome::NotFound => Ok(lookup::NOT_FOUND_EXIT),
            }
        }
    }
}

/// The client's one socket, its NAT discovered through two known supernodes (flags
/// first, then the host cache), made into the QUIC endpoint every connection uses.
async fn open_endpoint(
    identity: &Identity,
    home: &Home,
    supernodes: &[String],
) -> Result<(quinn::Endpoint, Option<parley_proto::nat::NatReport>)> {
    let mut known = supernode_link::resolve_all(supernodes).await?;
    known.extend(home.host_cache().iter().map(|c| c.addr));
    // Two different IPs, or the mapping test means nothing.
    let mut probe: Vec<SocketAddr> = Vec::new();
    for a in known {
        if probe.iter().all(|p| p.ip() != a.ip()) {
            probe.push(a);
        }
    }
    let (socket, report) = nat::bind_and_detect(&probe).await?;
    let alpns = [parley_proto::call::ALPN_CALL];
    let endpoint =
        if report.is_some_and(|r| r.nat == parley_proto::presence::NatType::UdpBlocked) {
            // No UDP gets out: run QUIC over TCP to the servers (see parley_net::tcp_tunnel).
            tracing::warn!("UDP is blocked here; reaching supernodes and relays over TCP");
            let tunnel = parley_net::tcp_tunnel::TcpTunnelSocket::new(identity)?;
            parley_net::make_endpoint_with(tunnel, identity, &alpns)
        } else {
            parley_net::make_endpoint_on(socket, identity, &alpns)
        }
        .context("cannot open the client's QUIC endpoint")?;
    Ok((endpoint, report))
}

/// The client's one endpoint: every supernode, relay and peer connection uses its socket.
fn client_endpoint(identity: &Identity) -> Result<quinn::Endpoint> {
    let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
    parley_net::make_endpoint(bind, identity, &[parley_proto::call::ALPN_CALL])
        .context("cannot open the client's UDP socket")
}
