//! Asking for a reload: SIGHUP and `POST /-/reload` both send a request to the one task that
//! applies configurations, and wait for its outcome, so reloads run one at a time whoever
//! asked for them.

use tokio::sync::{mpsc, oneshot};

use crate::config::ConfigError;

/// Why a reload did not happen; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Started without a configuration file (the demo, tests): nothing to read again.
    #[error("this exporter was not started from a configuration file")]
    NoSource,
    /// The file could not be read, or was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The task that applies configurations has stopped.
    #[error("the exporter is shutting down")]
    ShuttingDown,
}

/// A reload request: the outcome goes back on the channel.
pub type ReloadRequest = oneshot::Sender<Result<(), ReloadError>>;

/// Where reload requests go; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    /// To the task that owns the scheduler.
    requests: mpsc::Sender<ReloadRequest>,
}

impl ReloadHandle {
    /// A handle and the receiving end for the task that performs reloads.
    pub fn channel() -> (ReloadHandle, mpsc::Receiver<ReloadRequest>) {
        let (requests, receiver) = mpsc::channel(4);
        (ReloadHandle { requests }, receiver)
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| ReloadError::ShuttingDown)?;
        answer.await.map_err(|_| ReloadError::ShuttingDown)?
    }
}
