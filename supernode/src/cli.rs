//! Command line and TOML configuration; flags override the file.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use parley_supernode::limits::Limits;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Parley supernode: holds signed presence, answers lookups and STUN, forms the overlay.
#[derive(Debug, Parser)]
#[command(name = "supernode", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this supernode's public key. A missing key file is an error unless
    /// `--create` is given (so a mistyped path never silently makes a new identity).
    Id {
        /// Key file.
        #[arg(long, default_value = "supernode.key")]
        key: PathBuf,
        /// Create the key file if it does not exist.
        #[arg(long)]
        create: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// UDP address to serve QUIC on (clients and other supernodes).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// An existing supernode to join the overlay through (repeatable).
    #[arg(long = "join", value_name = "HOST:PORT")]
    pub join: Vec<String>,
    /// Key file; created with a new identity if missing. Default: supernode.key in the
    /// working directory (give a path in a state directory).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// UDP address for STUN binding requests (advertised to clients, so any port works).
    /// Default: the --listen IP, port 3478 (STUN's own; an ephemeral port when --listen
    /// has port 0).
    #[arg(long)]
    pub stun_listen: Option<SocketAddr>,
    /// A second IP of this host for RFC 5780 NAT behaviour discovery: STUN then answers
    /// on two IPs and two ports with OTHER-ADDRESS. Needs --stun-listen on a specific IP.
    #[arg(long, value_name = "IP")]
    pub stun_alternate_ip: Option<IpAddr>,
    /// The second STUN port, on --stun-listen's IP (and --stun-alternate-ip's), for
    /// RFC 5780 change-port answers: open it in the firewall too. Default: the STUN
    /// port + 1 (3479); 0 means any free port (the default when the STUN port is 0).
    #[arg(long, value_name = "PORT")]
    pub stun_alternate_port: Option<u16>,
    /// A relay to hand out to calls (repeatable); relays can also report in themselves.
    #[arg(long = "relay", value_name = "HOST:PORT")]
    pub relay: Vec<String>,
    /// The key (printable id, from `relay id`) of a relay that may report in with
    /// `--supernode` (repeatable). Relays with other keys are refused; with neither
    /// --relay nor --relay-key, every reporting relay is refused and calls get no relay.
    #[arg(long = "relay-key", value_name = "RELAY_ID")]
    pub relay_key: Vec<String>,
    /// TOML file with the same settings as the flags (listen, join, key, stun_listen, relay,
    /// tcp_listen, max_connections, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// TCP address for clients whose networks drop UDP (QUIC over TCP), advertised to
    /// clients (any port works). Default: the --listen IP and port number, over TCP.
    #[arg(long)]
    pub tcp_listen: Option<SocketAddr>,
    /// TCP address to serve Prometheus metrics (`/metrics`) and `/health` on. Default: off.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Live QUIC connections in total (attached clients, supernodes, relays); more are
    /// refused. Default 20000. Each idle attached client costs memory (figures in
    /// docs/performance.md, "Supernode capacity"); raise this only with the memory for it.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// The public IP other supernodes reach this one at, when --listen is a wildcard
    /// (0.0.0.0, [::]) or a private address behind a port forward. The overlay
    /// position follows the IP (BEP 42): without it this supernode places itself by
    /// its key alone while others place it by the IP they see. Must be of --listen's
    /// family (only [::], dual stack, takes either). Default: the --listen IP.
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<IpAddr>,
}

/// STUN's port (RFC 8489 §18.6): the default STUN address's, advertised like any other.
pub const STUN_PORT: u16 = 3478;

/// The default key file, in the working directory.
pub const DEFAULT_KEY: &str = "supernode.key";

/// The file form of [`RunArgs`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub join: Vec<String>,
    pub key: Option<PathBuf>,
    pub stun_listen: Option<SocketAddr>,
    pub stun_alternate_ip: Option<IpAddr>,
    pub stun_alternate_port: Option<u16>,
    #[serde(default)]
    pub relay: Vec<String>,
    #[serde(default)]
    pub relay_key: Vec<String>,
    pub tcp_listen: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub public_ip: Option<IpAddr>,
}

/// Settings after merging flags over the file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub join: Vec<String>,
    pub key: PathBuf,
    pub stun_listen: SocketAddr,
    /// `stun_listen` is the default (neither flag nor file set it): if port 3478 is
    /// taken, STUN may answer on an ephemeral port instead (it is advertised).
    pub stun_default: bool,
    pub stun_alternate_ip: Option<IpAddr>,
    /// `--stun-alternate-port` (0: any free port); `None`: the STUN port + 1.
    pub stun_alternate_port: Option<u16>,
    pub relays: Vec<String>,
    pub relay_keys: Vec<parley_proto::PeerId>,
    pub tcp_listen: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// Admission caps, timeouts and quotas: the defaults with `--max-connections` applied.
    pub limits: Limits,
    /// `--public-ip`: the IP the overlay position is computed from, if not `listen`'s.
    pub public_ip: Option<IpAddr>,
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

/// How an error names a setting: the flag when it was given on the command line,
/// else its key in the config file (`max_connections` in /etc/parley/supernode.toml), so
/// an operator looks in the right place.
fn setting(flag: &str, from_flag: bool, config: Option<&Path>) -> String {
    match config {
        Some(path) if !from_flag => format!(
            "`{}` in {}",
            flag.trim_start_matches("--").replace('-', "_"),
            path.display()
        ),
        _ => flag.to_string(),
    }
}

impl RunArgs {
    pub fn settings(self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config = self.config.as_deref();
        let listen = self
            .listen
            .or(file.listen)
            .context("no listen address: pass --listen HOST:PORT (or `listen` in --config)")?;
        let join = if self.join.is_empty() {
            file.join
        } else {
            self.join
        };
        let key = self
            .key
            .or(file.key)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY));
        let stun_default = self.stun_listen.is_none() && file.stun_listen.is_none();
        let stun_listen = self.stun_listen.or(file.stun_listen).unwrap_or_else(|| {
            let port = if listen.port() == 0 { 0 } else { STUN_PORT };
            SocketAddr::new(listen.ip(), port)
        });
        let stun_alternate_port = self.stun_alternate_port.or(file.stun_alternate_port);
        if let Some(port) = stun_alternate_port.filter(|p| *p != 0) {
            anyhow::ensure!(
                port != stun_listen.port(),
                "{} {port} is the STUN port itself ({stun_listen}): RFC 5780's change-port answers need a second port",
                setting("--stun-alternate-port", self.stun_alternate_port.is_some(), config)
            );
        }
        let relays = if self.relay.is_empty() {
            file.relay
        } else {
            self.relay
        };
        let tcp_listen = self.tcp_listen.or(file.tcp_listen);
        let relay_key_flag = setting("--relay-key", !self.relay_key.is_empty(), config);
        let relay_key = if self.relay_key.is_empty() {
            file.relay_key
        } else {
            self.relay_key
        };
        let relay_keys = relay_key
            .iter()
            .map(|k| {
                k.parse()
                    .with_context(|| format!("bad {relay_key_flag} {k:?} (expected a relay id)"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut limits = Limits::default();
        if let Some(n) = self.max_connections.or(file.max_connections) {
            anyhow::ensure!(
                n > 0,
                "{} must be at least 1",
                setting("--max-connections", self.max_connections.is_some(), config)
            );
            limits.conns_total = n;
        }
        let public_ip = self.public_ip.or(file.public_ip);
        if let Some(ip) = public_ip {
            let flag = setting("--public-ip", self.public_ip.is_some(), config);
            check_public_ip(ip, listen, &flag)?;
        }
        Ok(Settings {
            public_ip,
            limits,
            relay_keys,
            stun_alternate_ip: self.stun_alternate_ip.or(file.stun_alternate_ip),
            stun_alternate_port,
            metrics: self.metrics.or(file.metrics),
            tcp_listen,
            listen,
            join,
            key,
            stun_listen,
            stun_default,
            relays,
        })
    }
}

/// Refuses a `--public-ip` of a family `listen` cannot be reached at: an IPv4
/// socket has no IPv6 address and a specific IPv6 one no IPv4 address; only the IPv6
/// wildcard (`[::]`, dual stack) serves both.
fn check_public_ip(ip: IpAddr, listen: SocketAddr, flag: &str) -> Result<()> {
    let listen_ip = listen.ip().to_canonical();
    let dual_stack = listen_ip.is_unspecified() && listen_ip.is_ipv6();
    anyhow::ensure!(
        dual_stack || ip.to_canonical().is_ipv4() == listen_ip.is_ipv4(),
        "{flag} {ip} is not of the listen address's family ({listen}): other supernodes could never reach this one there (listen on \"[::]:PORT\" to serve IPv4 and IPv6)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_stun_defaults_to_its_own_port() {
        let dir = std::env::temp_dir().join(format!("sn-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sn.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\njoin = [\"127.0.0.1:7100\"]\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["supernode", "--config", path.to_str().unwrap()]);
        let s = cli.run.settings().unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.stun_listen.port(), STUN_PORT);
        assert_eq!(s.join, vec!["127.0.0.1:7100".to_string()]);
        let cli = Cli::parse_from([
            "supernode",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:8000",
        ]);
        let s = cli.run.settings().unwrap();
        assert_eq!(s.listen.port(), 8000);
        assert_eq!(s.limits.conns_total, Limits::default().conns_total);
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\nmax_connections = 30000\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["supernode", "--config", path.to_str().unwrap()]);
        assert_eq!(cli.run.settings().unwrap().limits.conns_total, 30000);
        let flags = [
            "supernode",
            "--config",
            path.to_str().unwrap(),
            "--max-connections",
        ];
        let cli = Cli::parse_from(flags.iter().copied().chain(["60000"]));
        assert_eq!(cli.run.settings().unwrap().limits.conns_total, 60000);
        let cli = Cli::parse_from(flags.iter().copied().chain(["0"]));
        assert!(cli.run.settings().is_err());
        // --public-ip: none by default, from the file, the flag over the file.
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:7000\"\npublic_ip = \"203.0.113.7\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["supernode", "--config", path.to_str().unwrap()]);
        let s = cli.run.settings().unwrap();
        assert_eq!(s.public_ip, Some("203.0.113.7".parse().unwrap()));
        let cli = Cli::parse_from([
            "supernode",
            "--config",
            path.to_str().unwrap(),
            "--public-ip",
            "198.51.100.1",
        ]);
        let s = cli.run.settings().unwrap();
        assert_eq!(s.public_ip, Some("198.51.100.1".parse().unwrap()));
        let cli = Cli::parse_from(["supernode", "--listen", "127.0.0.1:1"]);
        assert_eq!(cli.run.settings().unwrap().public_ip, None);
        // --public-ip of the other family than --listen: refused, from the file too.
        let settings = |args: &[&str]| {
            Cli::parse_from(["supernode"].iter().chain(args))
                .run
                .settings()
        };
        let err = settings(&["--listen", "0.0.0.0:7000", "--public-ip", "::1"]).unwrap_err();
        assert!(err.to_string().contains("--public-ip ::1"), "{err:#}");
        assert!(settings(&[
            "--listen",
            "[2001:db8::1]:7000",
            "--public-ip",
            "203.0.113.7"
        ])
        .is_err());
        assert!(settings(&["--listen", "[::]:7000", "--public-ip", "203.0.113.7"]).is_ok());
        assert!(settings(&["--listen", "[::]:7000", "--public-ip", "2001:db8::7"]).is_ok());
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:7000\"\npublic_ip = \"2001:db8::7\"\n",
        )
        .unwrap();
        assert!(settings(&["--config", path.to_str().unwrap()]).is_err());
        // --stun-alternate-port: none by default, from the file, the flag over it, and
        // never the STUN port itself.
        assert_eq!(
            settings(&["--listen", "127.0.0.1:1"])
                .unwrap()
                .stun_alternate_port,
            None
        );
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\nstun_alternate_port = 3490\n",
        )
        .unwrap();
        let config = ["--config", path.to_str().unwrap()];
        assert_eq!(settings(&config).unwrap().stun_alternate_port, Some(3490));
        let flag = [&config[..], &["--stun-alternate-port", "0"]].concat();
        assert_eq!(settings(&flag).unwrap().stun_alternate_port, Some(0));
        let same = [&config[..], &["--stun-alternate-port", "3478"]].concat();
        let err = settings(&same).unwrap_err();
        assert!(err.to_string().contains("STUN port itself"), "{err:#}");
        std::fs::write(&path, "listen = \"127.0.0.1:7000\"\nbogus = 1\n").unwrap();
        let cli = Cli::parse_from(["supernode", "--config", path.to_str().unwrap()]);
        assert!(cli.run.settings().is_err());
    }

    #[test]
    fn an_error_names_the_config_key_when_the_value_came_from_the_file() {
        let dir = std::env::temp_dir().join(format!("sn-cfg-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sn.toml");
        let p = path.to_str().unwrap();
        let settings = |args: &[&str]| {
            Cli::parse_from(["supernode"].iter().chain(args))
                .run
                .settings()
        };
        let file_says = |body: &str| {
            std::fs::write(&path, format!("listen = \"0.0.0.0:7000\"\n{body}\n")).unwrap();
            settings(&["--config", p]).unwrap_err().to_string()
        };
        let err = file_says("max_connections = 0");
        assert!(err.contains(&format!("`max_connections` in {p}")), "{err}");
        let err = file_says("public_ip = \"2001:db8::7\"");
        assert!(err.contains(&format!("`public_ip` in {p}")), "{err}");
        let err = file_says("stun_alternate_port = 3478");
        assert!(
            err.contains(&format!("`stun_alternate_port` in {p}")),
            "{err}"
        );
        let err = file_says("relay_key = [\"nonsense\"]");
        assert!(err.contains(&format!("`relay_key` in {p}")), "{err}");
        // The flag, when the flag gave the value (even with a config file).
        std::fs::write(&path, "listen = \"0.0.0.0:7000\"\n").unwrap();
        let err = settings(&["--config", p, "--max-connections", "0"]).unwrap_err();
        assert!(err.to_string().starts_with("--max-connections"), "{err}");
    }
}
