//! Signals, handled in this one place: SIGTERM (systemd, Kubernetes) and SIGINT (Ctrl-C)
//! stop the exporter cleanly; SIGHUP reloads the configuration, as for other exporters.
//! Each stream is created once and kept, so no signal falls between two listeners.

use crate::app::Exporter;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The process's signal streams.
pub struct Signals {
    #[cfg(unix)]
    streams: Option<UnixStreams>,
}

#[cfg(unix)]
struct UnixStreams {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening. From here on SIGHUP no longer kills the process; where the streams
    /// cannot be created, only Ctrl-C is heard (and logged as such).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = (|| {
                Ok::<_, std::io::Error>(UnixStreams {
                    term: signal(SignalKind::terminate())?,
                    int: signal(SignalKind::interrupt())?,
                    hup: signal(SignalKind::hangup())?,
                })
            })();
            if let Err(e) = &streams {
                tracing::warn!(error = %e, "cannot listen for signals; only Ctrl-C stops the exporter");
            }
            Signals {
                streams: streams.ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        if let Some(s) = &mut self.streams {
            return tokio::select! {
                _ = s.term.recv() => Signal::Stop,
                _ = s.int.recv() => Signal::Stop,
                _ = s.hup.recv() => Signal::Reload,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}

/// Runs until SIGTERM or SIGINT, reloading `exporter` on every SIGHUP.
pub async fn run_until_stopped(signals: &mut Signals, exporter: &Exporter) {
    while signals.next().await == Signal::Reload {
        tracing::info!("SIGHUP: reloading the configuration");
        // The outcome is logged and exported by the reload itself.
        let _ = exporter.reload().await;
    }
}
