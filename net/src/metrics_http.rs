//! `--metrics ADDR` for the servers: Prometheus text exposition at `GET /metrics` and a
//! liveness check at `GET /health`, over plain HTTP/1.1 (hyper).
//!
//! Metrics are recorded with the `metrics` crate's macros anywhere in the process; this
//! module installs the Prometheus recorder (`metrics-exporter-prometheus`) and serves
//! its rendering. A `refresh` callback runs before every rendering so that gauges and
//! counters kept elsewhere (e.g. the relay's own counters) are read at scrape time.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Runs before each `/metrics` rendering: sets gauges and counters from live state.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The process already has a metrics recorder (only one per process).
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    /// The HTTP port could not be bound.
    #[error("cannot bind the metrics address {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Installs the process-wide Prometheus recorder, binds `addr` (TCP) and serves until
/// `shutdown` turns true. Returns the bound address (port 0 picks one).
///
/// Errors: [`MetricsError::Recorder`] when called twice in one process,
/// [`MetricsError::Bind`] when the address is taken.
pub async fn serve(
    addr: SocketAddr,
    refresh: Refresh,
    shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, MetricsError> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    tokio::spawn(accept_loop(listener, handle, refresh, shutdown));
    Ok(bound)
}

async fn accept_loop(
    listener: TcpListener,
    handle: PrometheusHandle,
    refresh: Refresh,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let (handle, refresh) = (handle.clone(), refresh.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = respond(&req, &handle, &refresh);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // A scraper that stalls is cut off rather than held forever.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    handle: &PrometheusHandle,
    refresh: &Refresh,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            refresh();
            (StatusCode::OK, "text/plain; version=0.0.4", handle.render())
        }
        (&Method::GET, "/health") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /health\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
