//! One shutdown signal for every task of a process: Ctrl-C, SIGTERM, or a trigger.

use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Watches for the shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl ShutdownTrigger {
    /// Starts the shutdown (idempotent).
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// True once the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the shutdown starts.
    pub async fn wait(&mut self) {
        // An error means every trigger is gone: nothing can stop us any more, so wait forever.
        if self.0.wait_for(|&down| down).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Triggers `trigger` on Ctrl-C or SIGTERM. Must run inside a tokio runtime.
pub fn trigger_on_signals(trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("Received Ctrl-C, shutting down."),
            _ = term => tracing::info!("Received SIGTERM, shutting down."),
        }
        trigger.trigger();
    });
}
