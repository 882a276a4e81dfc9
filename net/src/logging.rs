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

/// The exit of a server or tool binary: success, or `error: ` and the error with its
/// causes on one line ("outer: inner: root", a cause left out when the message before
/// it already quotes it, as `thiserror` messages with `{source}` do) and exit status 1.
/// Returning the error from `main` instead prints its `Debug` form, which adds a
/// backtrace of the reporting code whenever `RUST_BACKTRACE` is set: noise after an
/// ordinary refusal such as a busy port or a bad flag.
pub fn exit_status(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `error` and its causes joined with ": ", skipping a cause already quoted.
fn one_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_join_on_one_line_without_repeats() {
        let io = std::io::Error::other("address in use");
        let quoted = anyhow::Error::new(io).context("cannot bind 1.2.3.4:5: address in use");
        let error = quoted.context("cannot start the STUN service");
        assert_eq!(
            one_line(&error),
            "cannot start the STUN service: cannot bind 1.2.3.4:5: address in use"
        );
        let plain = anyhow::anyhow!("root").context("outer");
        assert_eq!(one_line(&plain), "outer: root");
    }
}
