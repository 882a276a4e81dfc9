//! Graceful shutdown on Ctrl-C or SIGTERM.

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs a server's `serve` future until the process is asked to stop, then flips
/// `shutdown` so its tasks end, and waits for it: the tail of every server's `main`.
pub async fn serve_until_signal(
    serve: impl std::future::Future<Output = ()> + Send + 'static,
    shutdown: tokio::sync::watch::Sender<bool>,
) {
    let server = tokio::spawn(serve);
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown.send(true);
    let _ = server.await;
}
