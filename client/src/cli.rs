//! The `parley` command line.

use crate::call::{CallOptions, PathPolicy};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Parley: peer-to-peer voice calls over an overlay of supernodes.
#[derive(Debug, Parser)]
#[command(name = "parley", version, about, long_about = None)]
pub struct Cli {
    /// Directory holding your identity and host cache.
    #[arg(long, global = true, env = "PARLEY_HOME")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or show your identity.
    Id {
        #[command(subcommand)]
        command: IdCommand,
    },
    /// Go online: attach to supernodes, publish your presence and answer calls until interrupted.
    Online {
        /// A supernode to bootstrap from (repeatable); the host cache is tried too.
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Answer every call without asking (bots and tests).
        #[arg(long)]
        auto_answer: bool,
        /// Print machine-readable JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Call someone by id, and talk until either side hangs up.
    Call {
        /// The id to call (as printed by their `parley id show`).
        id: String,
        /// A supernode to bootstrap from (repeatable); the host cache is tried too.
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Print machine-readable JSON lines; the last one summarises the call.
        #[arg(long)]
        json: bool,
        /// Give up if nobody answers within this many seconds.
        #[arg(long, default_value_t = 30)]
        ring_timeout: u64,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Look up a user's presence record by id.
    Lookup {
        /// The id to look up (as printed by `parley id show`).
        id: String,
        /// Supernode to ask (repeatable); the host cache is tried too.
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Print the record as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Discover the NAT in front of this machine (needs two supernodes on different IPs).
    Nat {
        /// A supernode to probe (give two); its STUN port is its QUIC port + 1.
        #[arg(long = "supernode", value_name = "HOST:PORT")]
        supernodes: Vec<String>,
        /// Print the result as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// List sound devices.
    Devices,
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
}
