//! `parley`: the Parley desktop client. See `parley --help` and docs/user-guide.md.

mod call;
mod cli;
mod home;
mod lookup;
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
            let endpoint = client_endpoint(&identity)?;
            let opts = call.options(Duration::from_secs(30));
            online::run(
                &home,
                identity,
                endpoint,
                &supernodes,
                opts,
                auto_answer,
                Printer { json },
            )
            .await?;
            Ok(0)
        }
        Command::Call {
            id,
            supernodes,
            json,
            ring_timeout,
            call,
        } => {
            let identity = keyfile::load(&home.key_path())?;
            let endpoint = client_endpoint(&identity)?;
            let out = Printer { json };
            let opts = call.options(Duration::from_secs(ring_timeout));
            let mut session =
                ClientSession::start(&home, identity, endpoint, &supernodes, out).await?;
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

/// The client's one endpoint: every supernode, relay and peer connection uses its socket.
fn client_endpoint(identity: &Identity) -> Result<quinn::Endpoint> {
    let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
    parley_net::make_endpoint(bind, identity, &[parley_proto::call::ALPN_CALL])
        .context("cannot open the client's UDP socket")
}
