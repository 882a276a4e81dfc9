//! Logging setup shared by the three binaries: `tracing` to stderr, filtered by
//! `RUST_LOG` (stdout is kept for the machine-readable lines scripts wait for).

/// Installs the subscriber; `default` is the filter when `RUST_LOG` is unset.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Prints a server key file's identity, creating the key if missing (`supernode id`,
/// `relay id`): what an operator gives the other side to configure trust.
pub fn print_server_id(key: &std::path::Path) -> Result<(), parley_proto::keyfile::KeyFileError> {
    let identity = parley_proto::keyfile::load_or_create(key)?;
    println!("{}", identity.peer_id());
    Ok(())
}
