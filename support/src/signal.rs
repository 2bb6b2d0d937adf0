//! Waiting for the signal that asks a service to stop.

/// Resolves on SIGTERM or SIGINT. If the handlers cannot be installed it never resolves: the
/// service then runs until it is killed, which is what it would do without a handler.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
