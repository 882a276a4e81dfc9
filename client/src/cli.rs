//! The `parley` command line.

use crate::call::{CallOptions, PathPolicy};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Parley: peer-to-peer voice calls over an overlay of supernodes.
///
/// Run `parley online` to be reachable; the other commands use that running client when
/// there is one (and start a short-lived session only when there is none).
#[derive(Debug, Parser)]
#[command(name = "parley", version, about, long_about = None)]
pub struct Cli {
    /// Directory holding your identity, contacts, history and host cache.
    #[arg(long, global = true, env = "PARLEY_HOME")]
    pub home: Option<PathBuf>,
    /// Print machine-readable JSON lines (errors too, as `error` events).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do; none opens the terminal UI (on a terminal).
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command line, or exit: `--help` and `--version` as clap prints them (exit 0);
    /// an argument error as clap prints it (stderr, exit 2), or with `--json` on the
    /// command line as the `error` event every other error is (stdout, exit 2).
    pub fn parse_or_exit() -> Cli {
        let e = match Cli::try_parse() {
            Ok(cli) => return cli,
            Err(e) => e,
        };
        let json = std::env::args_os()
            .take_while(|a| a != "--")
            .any(|a| a == "--json");
        if !json || !e.use_stderr() {
            e.exit();
        }
        crate::output::Printer::local(true).error(&clap_message(&e), e.exit_code());
        std::process::exit(e.exit_code());
    }
}

/// A clap error as one line: its text without the `error: ` prefix, the usage and the
/// `--help` hint (e.g. `invalid value '100' for '--relay-kbps <KBPS>': 100 is not in
/// 512..=10000000`).
fn clap_message(e: &clap::Error) -> String {
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a subcommand or argument is missing (see --help)".into();
    }
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

/// `--serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeArg {
    Auto,
    Always,
    Never,
}

impl From<ServeArg> for parley_proto::promotion::ServeMode {
    fn from(a: ServeArg) -> Self {
        use parley_proto::promotion::ServeMode;
        match a {
            ServeArg::Auto => ServeMode::Auto,
            ServeArg::Always => ServeMode::Always,
            ServeArg::Never => ServeMode::Never,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, show or rename your identity.
    Id {
        #[command(subcommand)]
        command: IdCommand,
    },
    /// Run your client: attach to supernodes, publish your presence, answer calls, and
    /// serve the other commands, until interrupted.
    Online {
        /// A supernode to bootstrap from (repeatable): HOST:PORT is its QUIC address,
        /// tcp://HOST:PORT its TCP fallback (used only where UDP is blocked); default:
        /// `supernodes` in <home>/config.toml; the host cache is tried too.
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Answer every call without asking (bots and tests).
        #[arg(long)]
        auto_answer: bool,
        /// Accept files contacts send (`parley send`) into this directory: saved under
        /// the sender's file name, never overwriting (a taken name gets " (1)", ...);
        /// without it, file offers are refused.
        #[arg(long, value_name = "DIR")]
        accept_files: Option<PathBuf>,
        /// Be an echo service: answer every call and play the caller's audio back.
        #[arg(long, conflicts_with_all = ["auto_answer", "input", "output", "input_device", "output_device"])]
        echo: bool,
        /// Serve others as a supernode and a relay when this client is worth it: `auto`
        /// after --promote-after seconds online, `always` as soon as a dial-back from
        /// another supernode proves your UDP address reachable, `never`. Never behind a
        /// symmetric NAT or with UDP blocked.
        #[arg(long, value_enum, default_value_t = ServeArg::Auto)]
        serve: ServeArg,
        /// How long `--serve auto` waits online before checking reachability.
        #[arg(long, value_name = "SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(0..=86_400 * 7))]
        promote_after: u64,
        /// Upload budget for relaying others' calls, in kbit/s of 1,024 bit (each relayed
        /// leg may use 256): 512 (one call) to 10,000,000; refused with `--serve never`,
        /// which relays nothing. Default: a quarter of the upload,
        /// measured against a supernode before serving (at least 512, at most 8192);
        /// `auto` does not serve without a measurement, or when a quarter of it is under
        /// 512. Given, nothing is measured.
        #[arg(long, value_name = "KBPS", value_parser = clap::value_parser!(u32).range(512..=10_000_000))]
        relay_kbps: Option<u32>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Call a contact (by name) or anyone (by id), and talk until either side hangs up.
    /// Several at once: a conference call that you host (up to 7 others).
    Call {
        /// Contacts' names, or ids (as printed by their `parley id show`).
        #[arg(required = true, num_args = 1.., value_name = "ID_OR_NAME")]
        targets: Vec<String>,
        /// A supernode to bootstrap from when no client is running (repeatable;
        /// HOST:PORT, or tcp://HOST:PORT for its TCP fallback where UDP is blocked).
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Give up if nobody answers within this many seconds.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
        ring_timeout: u64,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Call someone into the conference you host (through the running client).
    Add {
        /// A contact's name, or an id.
        target: String,
    },
    /// Send a file to contacts (by name) or anyone (by id). Each recipient's running
    /// client must accept files (`parley online --accept-files DIR`); recipients pass
    /// chunks on to each other. Exits 0 once every recipient holds the verified file,
    /// else 1, naming who did not get it.
    Send {
        /// The file to send.
        file: PathBuf,
        /// Recipients: contact names or ids.
        #[arg(required = true, value_name = "ID_OR_NAME")]
        recipients: Vec<String>,
        /// A supernode to bootstrap from when no client is running (repeatable;
        /// HOST:PORT, or tcp://HOST:PORT for its TCP fallback where UDP is blocked).
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Give a recipient up once it has been out of reach (offline, not answering,
        /// connection lost before it had the file) for this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        retry_for: u64,
        /// Send only through a relay (by default: direct, and through the relay the
        /// offer was granted when a direct connection fails).
        #[arg(long)]
        relay_only: bool,
        /// Test hook: offer the file under this name instead of FILE's, unchecked
        /// (shows that receivers refuse hostile names).
        #[arg(long, hide = true)]
        offer_name: Option<String>,
    },
    /// End the call in progress (the client stays online).
    Hangup,
    /// Stop sending your microphone (the peer hears silence).
    Mute,
    /// Send your microphone again.
    Unmute,
    /// Answer the call ringing now.
    Answer {
        /// If nothing rings yet, wait up to this many seconds for a call.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        wait: u64,
    },
    /// Decline the call ringing now.
    Decline,
    /// Whether your client runs, where it is attached, the call in progress.
    Status,
    /// Look up a user's presence record by id or contact name.
    Lookup {
        /// The id (as printed by `parley id show`) or a contact's name.
        id: String,
        /// Supernode to ask when no client is running (repeatable).
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
    },
    /// Add, remove or verify a contact.
    Contact {
        #[command(subcommand)]
        command: ContactCommand,
    },
    /// List your contacts with their presence (online, away, offline).
    Contacts {
        /// Supernode to ask when no client is running (repeatable).
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
    },
    /// Your calls: who, when, which way, how long, how they ended, which path.
    History {
        /// Show only the last N calls.
        #[arg(long, default_value_t = 50)]
        last: usize,
    },
    /// Discover the NAT in front of this machine (needs two supernodes on different IPs).
    Nat {
        /// A supernode to probe (give two): HOST:PORT (QUIC; its STUN address is asked
        /// for), or tcp://HOST:PORT (its TCP fallback, tried when UDP gets no answer).
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
    },
    /// List sound devices.
    Devices,
    /// The full-screen terminal UI (also what `parley` alone opens on a terminal); starts
    /// your client if none runs, and stops it on quit.
    Ui {
        /// A supernode to bootstrap from if the UI starts the client (repeatable).
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Audio of the calls you place from the UI.
        #[command(flatten)]
        call: CallArgs,
    },
}

impl Command {
    /// The command's `--supernode` list, for the commands that have one (an empty list
    /// is filled from `<home>/config.toml`, see [`crate::config`]).
    pub fn supernodes_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            Command::Online { supernodes, .. }
            | Command::Call { supernodes, .. }
            | Command::Send { supernodes, .. }
            | Command::Lookup { supernodes, .. }
            | Command::Contacts { supernodes, .. }
            | Command::Nat { supernodes }
            | Command::Ui { supernodes, .. } => Some(supernodes),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Add a contact, pinning their key (the id) from now on.
    Add {
        /// The name you will call them by.
        name: String,
        /// Their id (as printed by their `parley id show`).
        id: String,
    },
    /// Remove a contact.
    Rm { name: String },
    /// Mark a contact's safety code as compared and matching.
    Verify { name: String },
}

/// Audio and path options of a call.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Send this WAV file instead of the microphone (any common rate, mono or stereo).
    #[arg(long, value_name = "FILE.wav")]
    pub input: Option<PathBuf>,
    /// Write what you hear to this WAV file instead of the speakers (48 kHz mono).
    /// With several calls, later ones go to FILE-2.wav, FILE-3.wav, ...
    #[arg(long, value_name = "FILE.wav")]
    pub output: Option<PathBuf>,
    /// Capture device (see `parley devices`); default: the system default.
    #[arg(long)]
    pub input_device: Option<String>,
    /// Playback device (see `parley devices`); default: the system default.
    #[arg(long)]
    pub output_device: Option<String>,
    /// Opus bitrate in bit/s.
    #[arg(long, default_value_t = 32_000, value_parser = clap::value_parser!(i32).range(6_000..=128_000))]
    pub bitrate: i32,
    /// Use only the relay (diagnostics).
    #[arg(long, conflicts_with = "direct_only")]
    pub relay_only: bool,
    /// Use only a direct connection (diagnostics).
    #[arg(long)]
    pub direct_only: bool,
    /// Hang up by yourself after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

impl Default for CallArgs {
    /// What the flags default to.
    fn default() -> Self {
        CallArgs {
            input: None,
            output: None,
            input_device: None,
            output_device: None,
            bitrate: 32_000,
            relay_only: false,
            direct_only: false,
            duration: None,
        }
    }
}

impl CallArgs {
    pub fn options(&self, ring_timeout: Duration) -> CallOptions {
        CallOptions {
            input: self.input.clone(),
            output: self.output.clone(),
            input_device: self.input_device.clone(),
            output_device: self.output_device.clone(),
            bitrate: self.bitrate,
            paths: match (self.relay_only, self.direct_only) {
                (true, _) => PathPolicy::RelayOnly,
                (_, true) => PathPolicy::DirectOnly,
                _ => PathPolicy::Any,
            },
            duration: self
                .duration
                .filter(|d| *d > 0.0)
                .map(Duration::from_secs_f64),
            ring_timeout,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Create a new identity (refuses to overwrite an existing one).
    New {
        /// The name others see; not unique.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Print your id.
    Show,
    /// Change the name others see (a running client publishes it after a restart).
    Rename {
        /// The new name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(args: &[&str]) -> String {
        let e = Cli::try_parse_from(["parley"].iter().chain(args)).unwrap_err();
        clap_message(&e)
    }

    #[test]
    fn clap_errors_become_one_line_without_usage() {
        let m = message(&["online", "--relay-kbps", "100"]);
        assert!(
            m.starts_with("invalid value '100' for '--relay-kbps"),
            "{m}"
        );
        assert!(m.contains("512..=10000000") && !m.contains('\n'), "{m}");
        let m = message(&["call"]);
        assert!(m.contains("required") && m.contains("<ID_OR_NAME>"), "{m}");
        assert!(!m.contains("Usage") && !m.contains("--help"), "{m}");
        let m = message(&["--bogus"]);
        assert!(m.starts_with("unexpected argument '--bogus'"), "{m}");
    }
}
