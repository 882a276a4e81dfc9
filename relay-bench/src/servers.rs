//! The two relays under test, as processes (so their CPU and memory can be read from
//! /proc by PID), and how a call is set up on each.

use crate::load::{Framing, Leg};
use anyhow::{bail, Context, Result};
use parley_proto::presence::Contact;
use parley_proto::relay::channel::{decode_relay, encode_bind, RelayDatagram};
use parley_proto::relay::{CallId, RelayToken};
use parley_proto::Identity;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use stun_rs::attributes::turn::{
    ChannelNumber, RequestedTrasport, XorPeerAddress, XorRelayedAddress,
};
use stun_rs::methods::{ALLOCATE, CHANNEL_BIND};
use stun_rs::{MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder};
use tokio::net::UdpSocket;

const T: Duration = Duration::from_secs(5);
/// USER_HZ: /proc reports CPU time in these ticks on Linux.
const TICKS_PER_SEC: u64 = 100;

/// A relay process, killed by PID when dropped.
pub struct Server {
    pub child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the process has used, µs.
    pub fn cpu_us(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name (which may hold spaces) start after ')'.
        let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11).context("utime")?.parse::<u64>()?
            + f.get(12).context("stime")?.parse::<u64>()?;
        Ok(ticks * 1_000_000 / TICKS_PER_SEC)
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("VmRSS")?.parse()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parley's relay (`relay` built next to this binary, release), trusting `issuer`.
pub struct Parley {
    pub server: Server,
    pub contact: Contact,
    issuer: Identity,
    endpoint: quinn::Endpoint,
    /// Joined legs' connections, kept open.
    legs: Vec<parley_relay::RelayLeg>,
}

fn relay_binary() -> Result<std::path::PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("relay");
    if !path.exists() {
        eprintln!("building the relay (cargo build --release -p parley-relay --bin relay)");
        let ok = Command::new("cargo")
            .args(["build", "--release", "-p", "parley-relay", "--bin", "relay"])
            .status()?
            .success();
        if !ok || !path.exists() {
            bail!("cannot build the relay binary at {}", path.display());
        }
    }
    Ok(path)
}

impl Parley {
    pub fn start(dir: &std::path::Path) -> Result<Parley> {
        let issuer = Identity::generate();
        let key = dir.join("relay.key");
        let mut child = Command::new(relay_binary()?)
            .args(["--listen", "127.0.0.1:0", "--key"])
            .arg(&key)
            .args(["--trust", &issuer.peer_id().to_string()])
            .args(["--data-threads", &cores().to_string()])
            .args(["--max-joins-per-ip", "100000", "--max-legs", "100000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting relay")?;
        let stdout = child.stdout.take().context("relay stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_string)
                .with_context(|| format!("no {k} in {line:?}"))
        };
        let contact = Contact {
            id: field("id=")?.parse()?,
            addr: field("quic=")?.parse()?,
        };
        let me = Identity::generate();
        let endpoint = parley_net::make_endpoint("127.0.0.1:0".parse()?, &me, &[])?;
        Ok(Parley {
            server: Server { child },
            contact,
            issuer,
            endpoint,
            legs: Vec::new(),
        })
    }

    /// Sets up one call: two parties join over QUIC and prove their channel address.
    pub async fn call(&self) -> Result<([Leg; 2], [parley_relay::RelayLeg; 2])> {
        let (a, b) = (Identity::generate(), Identity::generate());
        let token = RelayToken {
            call_id: CallId::random(),
            parties: [a.peer_id(), b.peer_id()],
            relay: self.contact.id,
            issuer: self.issuer.peer_id(),
            expires_at: parley_net::clock::now() + Duration::from_secs(600),
        }
        .sign(&self.issuer);
        let la = parley_relay::join_relay(&self.endpoint, &a, self.contact, &token, T).await?;
        let lb = parley_relay::join_relay(&self.endpoint, &b, self.contact, &token, T).await?;
        let legs = [prove(&la).await?, prove(&lb).await?];
        Ok((legs, [la, lb]))
    }

    pub fn keep(&mut self, legs: [parley_relay::RelayLeg; 2]) {
        self.legs.extend(legs);
    }
}

async fn prove(leg: &parley_relay::RelayLeg) -> Result<Leg> {
    let grant = leg.channel.context("no channel granted")?;
    let key = leg.channel_key.context("no channel key")?;
    let to = SocketAddr::new(leg.conn.remote_address().ip(), grant.port);
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    let mut cookie = None;
    let mut counter = 0;
    for _ in 0..20 {
        counter += 1;
        encode_bind(&mut out, &key, grant.channel, counter, cookie);
        socket.send_to(&out, to).await?;
        let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await
        else {
            continue;
        };
        match decode_relay(&buf[..n]) {
            Ok(RelayDatagram::Challenge { cookie: c, .. }) => cookie = Some(c),
            Ok(RelayDatagram::Bound { .. }) => {
                return Ok(Leg {
                    socket: Arc::new(socket),
                    to,
                    framing: Framing::Parley {
                        key,
                        channel: grant.channel,
                        counter: AtomicU64::new(counter),
                    },
                })
            }
            _ => {}
        }
    }
    bail!("channel address not proven")
}

/// coturn's `turnserver`, installed from Debian's package if missing.
pub struct Coturn {
    pub server: Server,
    pub addr: SocketAddr,
}

impl Coturn {
    pub fn start() -> Result<Coturn> {
        if Command::new("turnserver").arg("--help").output().is_err() {
            eprintln!("installing coturn (apt-get install -y coturn)");
            let _ = Command::new("apt-get").arg("update").status();
            let ok = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "coturn"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()?
                .success();
            if !ok {
                bail!("apt-get install coturn failed");
            }
        }
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        // A competent operator's settings: no auth (as asked), UDP only, one relay thread
        // per core, no logging per packet, loopback peers allowed (everything is local).
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--no-auth",
                "--no-tls",
                "--no-dtls",
                "--no-tcp",
                "--no-cli",
            ])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--relay-threads", &cores().to_string()])
            .args(["--min-port", "20000", "--max-port", "59999"])
            .args([
                "--allow-loopback-peers",
                "--no-multicast-peers",
                "--no-tcp-relay",
            ])
            .args(["--total-quota", "0", "--user-quota", "0", "--max-bps", "0"])
            .args([
                "--no-software-attribute",
                "--log-file",
                "/dev/null",
                "--no-stdout-log",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting turnserver")?;
        std::thread::sleep(Duration::from_millis(1500));
        Ok(Coturn {
            server: Server { child },
            addr,
        })
    }

    /// Sets up one call: two allocations, each with a channel bound to the other's
    /// relayed address.
    pub async fn call(&self) -> Result<[Leg; 2]> {
        let sa = UdpSocket::bind("127.0.0.1:0").await?;
        let sb = UdpSocket::bind("127.0.0.1:0").await?;
        let ra = self.allocate(&sa).await?;
        let rb = self.allocate(&sb).await?;
        self.bind(&sa, rb).await?;
        self.bind(&sb, ra).await?;
        let leg = |socket| Leg {
            socket: Arc::new(socket),
            to: self.addr,
            framing: Framing::Turn { channel: 0x4000 },
        };
        Ok([leg(sa), leg(sb)])
    }

    async fn request(
        &self,
        socket: &UdpSocket,
        msg: &stun_rs::StunMessage,
    ) -> Result<stun_rs::StunMessage> {
        let mut out = [0u8; 256];
        let n = MessageEncoderBuilder::default()
            .build()
            .encode(&mut out, msg)?;
        let mut buf = [0u8; 1024];
        for _ in 0..10 {
            socket.send_to(&out[..n], self.addr).await?;
            let Ok(Ok(got)) =
                tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
            else {
                continue;
            };
            let (answer, _) = MessageDecoderBuilder::default()
                .build()
                .decode(&buf[..got])
                .map_err(|e| anyhow::anyhow!("bad TURN answer: {e:?}"))?;
            if answer.class() != MessageClass::SuccessResponse {
                bail!("TURN request refused: {answer:?}");
            }
            return Ok(answer);
        }
        bail!("turnserver did not answer")
    }

    async fn allocate(&self, socket: &UdpSocket) -> Result<SocketAddr> {
        let msg = StunMessageBuilder::new(ALLOCATE, MessageClass::Request)
            .with_attribute(RequestedTrasport::new(stun_rs::protocols::UDP))
            .build();
        let answer = self.request(socket, &msg).await?;
        let relayed = answer
            .get::<XorRelayedAddress>()
            .context("no XOR-RELAYED-ADDRESS")?
            .as_xor_relayed_address()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(*relayed.socket_address())
    }

    async fn bind(&self, socket: &UdpSocket, peer: SocketAddr) -> Result<()> {
        let msg = StunMessageBuilder::new(CHANNEL_BIND, MessageClass::Request)
            .with_attribute(ChannelNumber::new(0x4000))
            .with_attribute(XorPeerAddress::from(peer))
            .build();
        self.request(socket, &msg).await.map(|_| ())
    }
}
