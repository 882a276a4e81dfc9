//! `parley`: the Parley desktop client. See `parley --help` and docs/user-guide.md.

mod call;
mod cli;
mod conference;
mod config;
mod contacts;
mod control;
mod history;
mod home;
mod lookup;
mod nat;
mod online;
mod output;
mod presence;
mod render;
mod session;
mod supernode_link;
mod transfer;
mod tui;

use anyhow::{bail, Context, Result};
use call::answer::AnswerMode;
use call::audio::{self, CallControl};
use cli::{Cli, Command, ContactCommand, IdCommand};
use contacts::Contacts;
use control::{InstanceLock, Request};
use home::Home;
use output::{exit_code_of, Failure, Printer, EXIT_FAILED, EXIT_OK};
use parley_proto::{keyfile, Identity};
use session::ClientSession;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    parley_net::init_logging("warn");
    let cli = Cli::parse_or_exit();
    let out = Printer::local(cli.json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&format!("cannot start the async runtime: {e}"), EXIT_FAILED);
            std::process::exit(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli, out)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let code = exit_code_of(&e);
            out.error(&format!("{e:#}"), code);
            std::process::exit(code);
        }
    }
}

/// A command only the running client can do: send it there, or say none runs.
async fn to_running(home: &Home, request: Request, out: Printer) -> Result<i32> {
    match control::connect(home).await {
        Some(stream) => control::remote(stream, &request, out).await,
        None => Err(Failure {
            code: EXIT_FAILED,
            message: format!(
                "no client is running for {} (start one with `parley online`)",
                home.dir().display()
            ),
        }
        .into()),
    }
}

async fn run(cli: Cli, out: Printer) -> Result<i32> {
    let home = Home::resolve(cli.home)?;
    let mut command = match cli.command {
        Some(c) => c,
        None if std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::io::IsTerminal::is_terminal(&std::io::stdin()) =>
        {
            Command::Ui {
                supernodes: Vec::new(),
                call: cli::CallArgs::default(),
            }
        }
        None => return Err(Failure::usage(
            "no command given (run `parley --help`; on a terminal, `parley` alone opens the UI)",
        )),
    };
    if let Some(flags) = command.supernodes_mut() {
        config::bootstrap(flags, home.dir())?;
    }
    match command {
        Command::Id {
            command: IdCommand::New { name },
        } => {
            check_display_name(&name)?;
            let identity = Identity::generate();
            keyfile::create(&home.key_path(), &identity)?;
            home.set_display_name(&name)?;
            println!("{}", identity.peer_id());
            eprintln!("new identity saved in {}", home.key_path().display());
            Ok(EXIT_OK)
        }
        Command::Id {
            command: IdCommand::Show,
        } => {
            let identity = keyfile::load(&home.key_path())?;
            println!("{}", identity.peer_id());
            Ok(EXIT_OK)
        }
        Command::Id {
            command: IdCommand::Rename { name },
        } => {
            check_display_name(&name)?;
            keyfile::load(&home.key_path())?;
            home.set_display_name(&name)?;
            let running = control::connect(&home).await.is_some();
            out.event(
                "renamed",
                serde_json::json!({"display_name": name, "restart_needed": running}),
                if running {
                    format!("your name is now {name:?}; restart `parley online` to publish it")
                } else {
                    format!("your name is now {name:?}")
                },
            );
            Ok(EXIT_OK)
        }
        Command::Online {
            supernodes,
            auto_answer,
            accept_files,
            echo,
            serve,
            promote_after,
            relay_kbps,
            call,
        } => {
            if serve == cli::ServeArg::Never && relay_kbps.is_some() {
                // Like --echo with --auto-answer: a flag that would be ignored is refused.
                return Err(Failure::usage(
                    "--relay-kbps sets the budget for relaying others' calls, and --serve never relays nothing: drop one of the two",
                ));
            }
            // Before anything else: one client per identity.
            let _lock = InstanceLock::acquire(&home, "online")?;
            let identity = keyfile::load(&home.key_path())?;
            let accept_files = accept_files.map(|d| check_accept_dir(&d)).transpose()?;
            let opts = call.options(Duration::from_secs(30));
            if !echo {
                let mut checked = opts.clone();
                audio::validate_files(&mut checked)?;
            }
            let (tx, commands) = tokio::sync::mpsc::channel(16);
            control::serve(&home, tx)?;
            let (endpoint, nat) = open_endpoint(&identity, &home, &supernodes, out).await?;
            let nat_type = nat.map(|n| n.nat).unwrap_or_default();
            let session =
                ClientSession::start(&home, identity, endpoint, &supernodes, nat, out).await?;
            let mode = match (echo, auto_answer) {
                (true, _) => AnswerMode::Echo,
                (false, true) => AnswerMode::Auto,
                (false, false) => AnswerMode::Ask,
            };
            if echo {
                out.event(
                    "echo",
                    serde_json::json!({}),
                    "echo service: answering every call and playing the caller's audio back",
                );
            }
            let cfg = online::Config {
                opts,
                mode,
                out,
                accept_files,
                serve: online::serve::ServeConfig {
                    mode: serve.into(),
                    promote_after: Duration::from_secs(promote_after),
                    relay_kbps,
                },
                nat: nat_type,
            };
            let result = online::run(&home, session, cfg, commands).await;
            let _ = std::fs::remove_file(home.control_path());
            result.map(|_| EXIT_OK)
        }
        Command::Nat { supernodes } => {
            let boot = supernode_link::resolve_bootstrap(&supernodes).await?;
            if boot.quic.len() + boot.tcp.len() < 2 {
                return Err(Failure::usage(
                    "NAT discovery needs two supernodes on different IPs: pass --supernode twice (HOST:PORT, and tcp://HOST:PORT for their TCP fallbacks)",
                ));
            }
            let (_socket, discovery) = nat::bind_and_detect(&boot, &[]).await?;
            let report = match discovery {
                nat::Discovery::Found(r) => r,
                nat::Discovery::Unreachable => bail!(
                    "could not reach the supernodes (no answer over UDP, nor over TCP): check the addresses; this says nothing about UDP being blocked"
                ),
                nat::Discovery::Unknown => bail!(
                    "NAT discovery failed: the supernodes answered but do not advertise STUN on two different IPs"
                ),
            };
            let mapped = report.mapped.map(|m| m.to_string());
            out.event(
                "nat",
                serde_json::json!({"nat": render::nat(report.nat), "mapped": mapped}),
                format!(
                    "NAT type: {}\nmapped address: {}",
                    render::nat(report.nat),
                    mapped.as_deref().unwrap_or("(none)")
                ),
            );
            Ok(EXIT_OK)
        }
        Command::Call {
            targets,
            supernodes,
            ring_timeout,
            call,
        } => {
            let opts = call.options(Duration::from_secs(ring_timeout));
            if targets.len() > 1 {
                return conference::command::call(&home, &targets, &supernodes, opts, out).await;
            }
            let target = targets.concat();
            // Every input is checked before anything goes on the network.
            let (callee, contact) = Contacts::load(&home).resolve(&target)?;
            let identity = keyfile::load(&home.key_path())?;
            if callee == identity.peer_id() {
                return Err(Failure::usage(
                    "that is your own id: you cannot call yourself",
                ));
            }
            let mut opts = opts;
            audio::validate_files(&mut opts)?;
            if let Some(stream) = control::connect(&home).await {
                let request = Request::Call {
                    callee: callee.to_string(),
                    contact,
                    opts,
                };
                return control::remote(stream, &request, out).await;
            }
            audio::check_call_audio(&opts)?;
            let _lock = InstanceLock::acquire(&home, "call")?;
            let (audio, _) = audio::open(&opts, opts.output.clone(), out)?;
            let (endpoint, nat) = open_endpoint(&identity, &home, &supernodes, out).await?;
            let mut session =
                ClientSession::start(&home, identity, endpoint, &supernodes, nat, out).await?;
            let handle = session.handle();
            let direct_in = std::mem::replace(&mut session.direct, tokio::sync::mpsc::channel(1).1);
            let outcome = call::place::run(
                &handle,
                call::place::PlaceCall {
                    home: &home,
                    callee,
                    contact,
                    audio,
                    opts: &opts,
                    out,
                    direct_in,
                    control: Arc::new(CallControl::default()),
                },
            )
            .await;
            session.stop().await;
            Ok(outcome?.exit_code())
        }
        Command::Add { target } => conference::command::add(&home, &target, out).await,
        Command::Send {
            file,
            recipients,
            supernodes,
            retry_for,
            relay_only,
            offer_name,
        } => {
            // Every input is checked before anything goes on the network.
            let identity = keyfile::load(&home.key_path())?;
            let mut req =
                send_request(&home, &identity, &file, &recipients, retry_for, offer_name)?;
            req.relay_only = relay_only;
            if let Some(stream) = control::connect(&home).await {
                return control::remote(stream, &Request::Send { req }, out).await;
            }
            let _lock = InstanceLock::acquire(&home, "send")?;
            let (endpoint, nat) = open_endpoint(&identity, &home, &supernodes, out).await?;
            let session =
                ClientSession::start(&home, identity, endpoint, &supernodes, nat, out).await?;
            let handle = session.handle();
            let name = home.display_name();
            let stop = parley_net::shutdown_signal();
            let code = transfer::send::run(&handle, &name, req, None, out, stop).await;
            session.stop().await;
            code
        }
        Command::Hangup => to_running(&home, Request::Hangup, out).await,
        Command::Mute => to_running(&home, Request::Mute, out).await,
        Command::Unmute => to_running(&home, Request::Unmute, out).await,
        Command::Answer { wait } => {
            // Until something rings (up to --wait), answering is tried quietly.
            let deadline = std::time::Instant::now() + Duration::from_secs(wait);
            while std::time::Instant::now() < deadline {
                if control::connect(&home).await.is_none() {
                    break;
                }
                if let Ok((events, EXIT_OK)) = control::ask(&home, &Request::Answer).await {
                    for v in events.iter().filter(|v| v["event"] == "answered") {
                        out.event(
                            "answered",
                            serde_json::json!({}),
                            v["text"].as_str().unwrap_or("answered"),
                        );
                    }
                    return Ok(EXIT_OK);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            to_running(&home, Request::Answer, out).await
        }
        Command::Decline => to_running(&home, Request::Decline, out).await,
        Command::Status => match control::connect(&home).await {
            Some(stream) => control::remote(stream, &Request::Status, out).await,
            None => {
                out.event(
                    "status",
                    serde_json::json!({"online": false}),
                    "not running: no `parley online` for this home",
                );
                // Documented exit code 1: no running client (the event still says so).
                Ok(EXIT_FAILED)
            }
        },
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
            Ok(EXIT_OK)
        }
        Command::Lookup { id, supernodes } => {
            let wanted = lookup::target(&home, &id)?;
            if let Some(stream) = control::connect(&home).await {
                let request = Request::Lookup {
                    id: wanted.to_string(),
                };
                return control::remote(stream, &request, out).await;
            }
            // Looking someone up needs no identity of our own; use a throwaway key if none.
            let identity = keyfile::load(&home.key_path()).unwrap_or_else(|_| Identity::generate());
            let endpoint = client_endpoint(&identity)?;
            lookup::run(&home, identity, endpoint, wanted, &supernodes, out).await
        }
        Command::Contact { command } => {
            let mut contacts = Contacts::load(&home);
            match command {
                ContactCommand::Add { name, id } => {
                    let added = contacts.add(&name, &id)?;
                    contacts.save(&home)?;
                    out.event(
                        "contact_added",
                        serde_json::json!({"name": name, "id": id, "new": added}),
                        if added {
                            format!("added {name}; their key is pinned (compare the safety code in your first call, then `parley contact verify {name}`)")
                        } else {
                            format!("{name} is already a contact with that id")
                        },
                    );
                }
                ContactCommand::Rm { name } => {
                    let c = contacts.remove(&name)?;
                    contacts.save(&home)?;
                    out.event(
                        "contact_removed",
                        serde_json::json!({"name": c.name, "id": c.id}),
                        format!("removed {}", c.name),
                    );
                }
                ContactCommand::Verify { name } => {
                    contacts.verify(&name)?;
                    contacts.save(&home)?;
                    out.event(
                        "contact_verified",
                        serde_json::json!({"name": name}),
                        format!("{name}'s safety code is marked verified"),
                    );
                }
            }
            Ok(EXIT_OK)
        }
        Command::Contacts { supernodes } => {
            if let Some(stream) = control::connect(&home).await {
                return control::remote(stream, &Request::Contacts, out).await;
            }
            let identity = keyfile::load(&home.key_path()).unwrap_or_else(|_| Identity::generate());
            let endpoint = client_endpoint(&identity)?;
            lookup::contacts_once(&home, identity, endpoint, &supernodes, out).await?;
            Ok(EXIT_OK)
        }
        Command::Ui { supernodes, call } => {
            keyfile::load(&home.key_path())?;
            let mut opts = call.options(Duration::from_secs(30));
            audio::validate_files(&mut opts)?;
            tui::run(&home, &supernodes, opts).await
        }
        Command::History { last } => {
            let entries = history::load(&home);
            if entries.is_empty() && !out.is_json() {
                println!("no calls yet");
            }
            let skip = entries.len().saturating_sub(last);
            for e in &entries[skip..] {
                out.event("call", serde_json::to_value(e)?, history::text(e));
            }
            Ok(EXIT_OK)
        }
    }
}

/// `--accept-files DIR`: an existing directory, made absolute.
fn check_accept_dir(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let abs = std::fs::canonicalize(dir)
        .map_err(|e| Failure::usage(format!("--accept-files {}: {e}", dir.display())))?;
    if !abs.is_dir() {
        return Err(Failure::usage(format!(
            "--accept-files {}: not a directory",
            dir.display()
        )));
    }
    Ok(abs)
}

/// `parley send`'s arguments, checked: a readable regular file whose name a receiver
/// would accept (unless the test hook names another), at most
/// `MAX_RECIPIENTS` distinct recipients other than ourselves.
fn send_request(
    home: &Home,
    identity: &Identity,
    file: &std::path::Path,
    targets: &[String],
    retry_for: u64,
    offer_name: Option<String>,
) -> Result<transfer::send::SendRequest> {
    use parley_proto::call::signal::MAX_RECIPIENTS;
    let abs = std::fs::canonicalize(file)
        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let meta = std::fs::metadata(&abs)?;
    if !meta.is_file() {
        return Err(Failure::usage(format!(
            "{}: not a regular file",
            file.display()
        )));
    }
    std::fs::File::open(&abs).map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    if meta.len() > parley_proto::transfer::manifest::MAX_FILE_SIZE {
        return Err(Failure::usage(format!(
            "{}: over the {} byte limit",
            file.display(),
            parley_proto::transfer::manifest::MAX_FILE_SIZE
        )));
    }
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parley_proto::transfer::check_file_name(&name).map_err(|e| {
        Failure::usage(format!(
            "cannot send a file named {name:?}: {e} (receivers refuse it; rename it)"
        ))
    })?;
    let contacts = Contacts::load(home);
    let mut recipients: Vec<(String, Option<String>)> = Vec::new();
    for t in targets {
        let (id, contact) = contacts.resolve(t)?;
        if id == identity.peer_id() {
            return Err(Failure::usage("you cannot send a file to yourself"));
        }
        if !recipients.iter().any(|(r, _)| *r == id.to_string()) {
            recipients.push((id.to_string(), contact));
        }
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(Failure::usage(format!(
            "at most {MAX_RECIPIENTS} recipients per file"
        )));
    }
    Ok(transfer::send::SendRequest {
        file: abs,
        recipients,
        retry_for: Duration::from_secs(retry_for),
        offer_name,
        relay_only: false,
    })
}

fn check_display_name(name: &str) -> Result<()> {
    if name.len() > parley_proto::presence::MAX_DISPLAY_NAME {
        return Err(Failure::usage(format!(
            "the name is longer than {} bytes",
            parley_proto::presence::MAX_DISPLAY_NAME
        )));
    }
    Ok(())
}

/// The client's one socket (dual stack), its NAT discovered through the STUN servers
/// known supernodes advertise (flags first, then the host cache), made into the QUIC
/// endpoint every connection uses — or, when UDP is blocked here, a QUIC endpoint
/// whose datagrams travel over TCP to the servers' advertised TCP fallbacks.
async fn open_endpoint(
    identity: &Identity,
    home: &Home,
    supernodes: &[String],
    out: Printer,
) -> Result<(quinn::Endpoint, Option<parley_proto::nat::NatReport>)> {
    let boot = supernode_link::resolve_bootstrap(supernodes).await?;
    let (socket, discovery) = nat::bind_and_detect(&boot, &home.known_hosts()).await?;
    let report = match discovery {
        nat::Discovery::Found(r) => Some(r),
        nat::Discovery::Unreachable => {
            // Said to the user (a `warning` event under --json), not only logged: a
            // script waiting for `published` should learn why it does not come.
            out.warning("no supernode answered over UDP or TCP; will keep trying");
            None
        }
        nat::Discovery::Unknown => None,
    };
    let alpns = [parley_proto::call::ALPN_CALL, transfer::link::ALPN_FILE];
    let endpoint =
        if report.is_some_and(|r| r.nat == parley_proto::presence::NatType::UdpBlocked) {
            // No UDP gets out: run QUIC over TCP to the servers (see parley_net::tcp_tunnel).
            out.warning("UDP is blocked here; reaching supernodes and relays over TCP");
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
    let socket = nat::bind_dual_stack().context("cannot open the client's UDP socket")?;
    parley_net::make_endpoint_on(socket, identity, &[parley_proto::call::ALPN_CALL])
        .context("cannot open the client's UDP socket")
}
