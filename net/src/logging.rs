//! Logging setup shared by the three binaries: `tracing` to stderr, filtered by
//! `RUST_LOG` (stdout is kept for the machine-readable lines scripts wait for).

/// Installs the subscriber; `default` is the filter when `RUST_LOG` is unset. Colours
/// (ANSI escapes) only when stderr is a terminal: logs redirected to a file or the
/// journal stay plain text.
pub fn init_logging(default: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Prints a server key file's identity (`supernode id`, `relay id`): what an operator
/// gives the other side to configure trust. With `create` a missing key file is created;
/// without it a missing file is [`parley_proto::keyfile::KeyFileError::Missing`], so a typo in
/// the path never silently makes a new identity.
pub fn print_server_id(
    key: &std::path::Path,
    create: bool,
) -> Result<(), parley_proto::keyfile::KeyFileError> {
    let identity = if create {
        parley_proto::keyfile::load_or_create(key)?
    } else {
        parley_proto::keyfile::load(key)?
    };
    println!("{}", identity.peer_id());
    Ok(())
}
