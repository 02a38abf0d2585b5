//! Wires the parts together: config → scheduler → client → metrics store → HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::hss::ApiError;
use crate::metrics::Store;
use crate::{scheduler, web};

/// How long shutdown waits for tasks before giving up on them.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);

/// A running exporter: its polling workers and its HTTP server.
pub struct Exporter {
    /// Where the HTTP server listens (useful when bound to port 0).
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Exporter {
    /// Starts polling and serving on `listener`.
    pub fn start(settings: &Settings, listener: TcpListener) -> Result<Exporter, ApiError> {
        let addr = listener
            .local_addr()
            .map_err(|e| ApiError::Connect(format!("listener has no address: {e}")))?;
        for warning in scheduler::capacity_warnings(settings) {
            tracing::warn!("{warning}");
        }
        let store = Arc::new(Store::new(settings.poll.stale_after));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        scheduler::spawn(settings, store.clone(), &cancel, &tracker)?;
        let state = Arc::new(web::WebState {
            store: store.clone(),
            ready: AtomicBool::new(false),
        });
        tracker.spawn(web::serve(listener, state.clone(), cancel.clone()));
        tracker.close();
        state.ready.store(true, Ordering::Release);
        tracing::info!(%addr, targets = settings.targets().count(), accounts = settings.accounts.len(), "exporter started");
        Ok(Exporter {
            addr,
            store,
            cancel,
            tracker,
        })
    }

    /// Stops polling and serving; in-flight scrapes are given a few seconds to finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("tasks still running after {SHUTDOWN_TIMEOUT:?}; exiting anyway");
        }
    }
}
