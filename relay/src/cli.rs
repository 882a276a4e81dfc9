//! Command line and TOML configuration; flags override the file.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use parley_proto::relay::{RateLimit, RelayConfig};
use parley_proto::PeerId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Parley relay: forwards end-to-end encrypted call media between the two parties of
/// a call, for calls whose tokens a trusted supernode signed.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this relay's public key (creating the key file if missing).
    Id {
        /// Key file.
        #[arg(long, default_value = "relay.key")]
        key: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// UDP address to serve QUIC on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Public key (printable id) of a supernode whose relay tokens to accept (repeatable).
    #[arg(long = "trust", value_name = "SUPERNODE_KEY")]
    pub trust: Vec<String>,
    /// Key file; created with a new identity if missing. Default: relay.key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// A supernode to report load to every 5 s (repeatable).
    #[arg(long = "supernode", value_name = "HOST:PORT")]
    pub supernodes: Vec<String>,
    /// Address to advertise in load reports, if not the --listen address.
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// TOML file with the same settings as the flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// TCP address for clients whose networks drop UDP (QUIC over TCP), advertised to
    /// clients (any port works). Default: the --listen IP and port number, over TCP.
    #[arg(long)]
    pub tcp_listen: Option<SocketAddr>,
    /// UDP address of the media data plane (default: the --listen IP, an ephemeral
    /// port; clients learn the port when they join).
    #[arg(long)]
    pub data_listen: Option<SocketAddr>,
    /// Data-plane threads, one UDP socket each (default 0: one per core).
    #[arg(long, default_value_t = 0)]
    pub data_threads: usize,
    /// Joins per second per client IP (bursts of three seconds' worth); each join costs
    /// a signature check. Default 20.
    #[arg(long, default_value_t = parley_proto::relay::JoinLimiter::DEFAULT_PER_SEC)]
    pub max_joins_per_ip: u32,
    /// TCP address to serve Prometheus metrics (`/metrics`) and `/health` on. Default: off.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub limits: Limits,
}

/// The limits, each optional: unset ones take the file's value, then the default.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Per-leg cap on datagrams per second. Default 100.
    #[arg(long)]
    pub max_packets_per_sec: Option<u32>,
    /// Per-leg cap on datagram bytes per second. Default 65536.
    #[arg(long)]
    pub max_bytes_per_sec: Option<u32>,
    /// Longest call, in seconds. Default 14400 (4 h).
    #[arg(long)]
    pub max_call_secs: Option<u64>,
    /// Close a paired leg that sends nothing for this many seconds. Default 30.
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Close a leg whose partner has not joined after this many seconds. Default 60.
    #[arg(long)]
    pub pair_timeout_secs: Option<u64>,
    /// Close a leg whose partner left and did not rejoin within this many seconds. Default 10.
    #[arg(long)]
    pub rejoin_grace_secs: Option<u64>,
    /// Most legs one key may hold. Default 4.
    #[arg(long)]
    pub max_legs_per_key: Option<u32>,
    /// Most legs the relay holds. Default 10000.
    #[arg(long)]
    pub max_legs: Option<u32>,
}

impl Limits {
    fn or(self, file: Limits) -> Limits {
        Limits {
            max_packets_per_sec: self.max_packets_per_sec.or(file.max_packets_per_sec),
            max_bytes_per_sec: self.max_bytes_per_sec.or(file.max_bytes_per_sec),
            max_call_secs: self.max_call_secs.or(file.max_call_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(file.idle_timeout_secs),
            pair_timeout_secs: self.pair_timeout_secs.or(file.pair_timeout_secs),
            rejoin_grace_secs: self.rejoin_grace_secs.or(file.rejoin_grace_secs),
            max_legs_per_key: self.max_legs_per_key.or(file.max_legs_per_key),
            max_legs: self.max_legs.or(file.max_legs),
        }
    }

    fn config(self) -> Result<RelayConfig> {
        let d = RelayConfig::default();
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        let config = RelayConfig {
            rate: RateLimit {
                packets_per_sec: self.max_packets_per_sec.unwrap_or(d.rate.packets_per_sec),
                bytes_per_sec: self.max_bytes_per_sec.unwrap_or(d.rate.bytes_per_sec),
                burst: d.rate.burst,
            },
            max_call_length: secs(self.max_call_secs, d.max_call_length),
            idle_timeout: secs(self.idle_timeout_secs, d.idle_timeout),
            pair_timeout: secs(self.pair_timeout_secs, d.pair_timeout),
            rejoin_grace: secs(self.rejoin_grace_secs, d.rejoin_grace),
            max_legs_per_key: self.max_legs_per_key.unwrap_or(d.max_legs_per_key),
            max_legs: self.max_legs.unwrap_or(d.max_legs),
            max_legs_per_ip: d.max_legs_per_ip,
        };
        if config.rate.packets_per_sec == 0 || config.rate.bytes_per_sec == 0 {
            bail!("a rate cap of 0 would drop every datagram; raise max_packets_per_sec / max_bytes_per_sec");
        }
        if config.max_legs == 0 || config.max_legs_per_key == 0 {
            bail!("max_legs and max_legs_per_key must be at least 1");
        }
        Ok(config)
    }
}

/// The file form of [`RunArgs`]: the same names, with the limits at the top level.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    #[serde(default)]
    trust: Vec<String>,
    key: Option<PathBuf>,
    #[serde(default)]
    supernodes: Vec<String>,
    advertise: Option<SocketAddr>,
    tcp_listen: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    max_packets_per_sec: Option<u32>,
    max_bytes_per_sec: Option<u32>,
    max_call_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    pair_timeout_secs: Option<u64>,
    rejoin_grace_secs: Option<u64>,
    max_legs_per_key: Option<u32>,
    max_legs: Option<u32>,
}

/// Settings after merging flags over the file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub trust: Vec<PeerId>,
    pub key: PathBuf,
    pub supernodes: Vec<String>,
    pub advertise: Option<SocketAddr>,
    pub tcp_listen: Option<SocketAddr>,
    pub data_listen: Option<SocketAddr>,
    pub data_threads: usize,
    pub max_joins_per_ip: u32,
    pub metrics: Option<SocketAddr>,
    pub limits: RelayConfig,
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

fn parse_keys(keys: &[String]) -> Result<Vec<PeerId>> {
    keys.iter()
        .map(|k| {
            k.parse::<PeerId>()
                .with_context(|| format!("bad --trust key {k:?}"))
        })
        .collect()
}

impl RunArgs {
    pub fn settings(self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = self
            .listen
            .or(file.listen)
            .context("no listen address: pass --listen HOST:PORT (or `listen` in --config)")?;
        let trust = if self.trust.is_empty() {
            file.trust
        } else {
            self.trust
        };
        if trust.is_empty() {
            bail!("no trusted supernode: pass --trust SUPERNODE_KEY (or `trust` in --config); without one the relay admits no call");
        }
        let file_limits = Limits {
            max_packets_per_sec: file.max_packets_per_sec,
            max_bytes_per_sec: file.max_bytes_per_sec,
            max_call_secs: file.max_call_secs,
            idle_timeout_secs: file.idle_timeout_secs,
            pair_timeout_secs: file.pair_timeout_secs,
            rejoin_grace_secs: file.rejoin_grace_secs,
            max_legs_per_key: file.max_legs_per_key,
            max_legs: file.max_legs,
        };
        let tcp_listen = self.tcp_listen.or(file.tcp_listen);
        Ok(Settings {
            metrics: self.metrics.or(file.metrics),
            tcp_listen,
            listen,
            trust: parse_keys(&trust)?,
            key: self
                .key
                .or(file.key)
                .unwrap_or_else(|| PathBuf::from("relay.key")),
            supernodes: if self.supernodes.is_empty() {
                file.supernodes
            } else {
                self.supernodes
            },
            advertise: self.advertise.or(file.advertise),
            data_listen: self.data_listen,
            data_threads: self.data_threads,
            max_joins_per_ip: self.max_joins_per_ip,
            limits: self.limits.or(file_limits).config()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::Identity;

    fn parse(args: &[&str]) -> Result<Settings> {
        let mut argv = vec!["relay"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)?.run.settings()
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        let sn = Identity::generate().peer_id();
        std::fs::write(
            &path,
            format!("listen = \"127.0.0.1:7000\"\ntrust = [\"{sn}\"]\nmax_legs = 50\nidle_timeout_secs = 5\n"),
        )
        .unwrap();
        let cfg = path.to_str().unwrap();
        let s = parse(&["--config", cfg]).unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.trust, vec![sn]);
        assert_eq!(s.limits.max_legs, 50);
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(s.limits.max_legs_per_key, 8);
        let s = parse(&[
            "--config",
            cfg,
            "--listen",
            "127.0.0.1:8000",
            "--max-legs",
            "7",
        ])
        .unwrap();
        assert_eq!((s.listen.port(), s.limits.max_legs), (8000, 7));
    }

    #[test]
    fn mistakes_are_errors() {
        let sn = Identity::generate().peer_id().to_string();
        assert!(parse(&["--trust", &sn]).is_err(), "no listen");
        assert!(parse(&["--listen", "127.0.0.1:0"]).is_err(), "no trust");
        let typo = format!("{}x", &sn[..57]);
        let err = parse(&["--listen", "127.0.0.1:0", "--trust", &typo]).unwrap_err();
        assert!(format!("{err:#}").contains("bad --trust key"));
        assert!(parse(&[
            "--listen",
            "127.0.0.1:0",
            "--trust",
            &sn,
            "--max-packets-per-sec",
            "0"
        ])
        .is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:7000\"\nbogus = 1\n").unwrap();
        assert!(parse(&["--trust", &sn, "--config", path.to_str().unwrap()]).is_err());
    }
}
