//! The error type of the QUIC plumbing.

use parley_proto::codec::DecodeError;
use thiserror::Error;

/// What went wrong moving bytes over QUIC.
#[derive(Debug, Error)]
pub enum NetError {
    /// TLS configuration could not be built (a bug or a bad key).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The local socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A dial could not be started.
    #[error("cannot dial: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a stream failed.
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading from a stream failed or the stream ended early.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The stream was already closed.
    #[error("stream closed")]
    ClosedStream(#[from] quinn::ClosedStream),
    /// The peer sent bytes that do not decode.
    #[error("peer sent a bad message: {0}")]
    Decode(#[from] DecodeError),
    /// The connection carries no identity (cannot happen with our TLS configs).
    #[error("peer presented no identity key")]
    NoPeerIdentity,
    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}
