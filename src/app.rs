//! Wires the parts together: config → scheduler → client → metrics store → HTTP, and
//! reloads: a new configuration is validated whole, then handed to the scheduler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Cli;
use crate::config::{ConfigError, Settings};
use crate::memory;
use crate::metrics::Store;
use crate::model::ListenAddress;
use crate::reload::{ReloadError, ReloadHandle, ReloadRequest};
use crate::scheduler::discover::{self, Found, Project};
use crate::scheduler::{self, Scheduler};
use crate::web;

/// How long shutdown waits for tasks before giving up on them.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);

/// The runtime the exporter serves on. Two worker threads are plenty to serve a cached
/// body; more would buy nothing but a malloc arena each (one on a single core).
/// `TOKIO_WORKER_THREADS` still overrides it. Polling runs on a thread of its own, see
/// [`Polling`].
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        builder.worker_threads(cores.min(2));
    }
    builder.enable_all().build()
}

/// The runtime the workers poll on. Beside a multi-threaded runtime (the exporter's), a
/// runtime of one thread of its own: a poll is a chain of wake-ups (the worker, the
/// connection's task, the worker again) that on two threads went back and forth between
/// them, and at a realistic poll rate, where nothing else is going on, that hand-over was
/// about a tenth of the exporter's CPU. On a single-threaded runtime (tests), that one.
struct Polling(Option<tokio::runtime::Runtime>);

impl Polling {
    fn start() -> std::io::Result<Polling> {
        let multi_thread = Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return Ok(Polling(None));
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("poller")
            .on_thread_start(yield_to_serving)
            .enable_all()
            .build()
            .map(|runtime| Polling(Some(runtime)))
    }

    fn handle(&self) -> Handle {
        self.0
            .as_ref()
            .map_or_else(Handle::current, |runtime| runtime.handle().clone())
    }
}

/// Lowers the calling thread's priority a little (nice 5), so that when polling and scrapes
/// want the same cores, the kernel lets the threads serving scrapes in first: a poll waits
/// a few milliseconds more, a scrape no longer waits for the polling thread's time slice.
/// Without it, at 1,000 polls a second on two cores, scrape latency grew by about a slice.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn yield_to_serving() {
    // SAFETY: nice() takes an integer and changes the calling thread's own nice value (a
    // per-thread attribute on Linux); raising it needs no privilege.
    let _ = unsafe { libc::nice(5) };
}

#[cfg(not(target_os = "linux"))]
fn yield_to_serving() {}

impl Drop for Polling {
    /// Dropped on the exporter's runtime, where a runtime may not block to shut down.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Reads the configuration again (file, secrets, environment) for a reload.
pub type Loader = Arc<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener handed in is not bound to an address.
    #[error("the listener has no address")]
    Listener(#[source] std::io::Error),
    /// The HTTP client for the API (its TLS roots) could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The thread polling runs on could not be started.
    #[error("cannot start the polling thread")]
    Polling(#[source] std::io::Error),
}

/// Why the command line's web options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// `--web.telemetry-path` is not a path the endpoints can serve.
    #[error("--web.telemetry-path: {0}")]
    TelemetryPath(String),
    /// `--web.config.file` cannot be read or is not valid.
    #[error("--web.config.file")]
    WebConfig(#[source] web::config::WebConfigError),
}

/// How the exporter is run, beyond its configuration.
#[derive(Clone)]
pub struct Options {
    /// Where `/metrics` is served (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// Where reloads read the configuration from; without it, reloads are refused.
    pub loader: Option<Loader>,
    /// Serve `POST /-/reload` (`--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// TLS and basic auth for the web endpoints (`--web.config.file`).
    pub web: Option<Arc<web::Security>>,
}

impl Options {
    /// How the command line says the endpoints are served: the telemetry path, the
    /// lifecycle API, the web config (read and checked now).
    pub fn from_cli(cli: &Cli) -> Result<Options, OptionsError> {
        let path = &cli.telemetry_path;
        web::check_telemetry_path(path).map_err(OptionsError::TelemetryPath)?;
        let security = match &cli.web_config_file {
            None => None,
            Some(file) => {
                let security = web::Security::load(file).map_err(OptionsError::WebConfig)?;
                tracing::info!(file = %file.display(), ?security, "web endpoints protected");
                Some(Arc::new(security))
            }
        };
        Ok(Options {
            telemetry_path: path.clone(),
            loader: None,
            enable_lifecycle: cli.enable_lifecycle,
            web: security,
        })
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            telemetry_path: "/metrics".into(),
            loader: None,
            enable_lifecycle: false,
            web: None,
        }
    }
}

/// A running exporter: its polling workers and its HTTP server.
pub struct Exporter {
    /// Where the HTTP server listens (the first listener; useful when bound to port 0).
    pub addr: SocketAddr,
    /// Every address it listens on.
    pub addrs: Vec<SocketAddr>,
    /// What polling wrote; tests and `once` read it directly.
    pub store: Arc<Store>,
    /// What the endpoints read; readiness is cleared on shutdown.
    state: Arc<web::WebState>,
    /// Where [`Exporter::reload`] sends its request.
    reloads: ReloadHandle,
    /// Stops every task.
    cancel: CancellationToken,
    /// Every task, to wait for on shutdown.
    tracker: TaskTracker,
    /// Where the workers run; after the tasks, it goes too.
    polling: Polling,
}

impl Exporter {
    /// Starts polling and serving on `listener`.
    pub fn start(
        settings: &Settings,
        listener: TcpListener,
        options: Options,
    ) -> Result<Exporter, StartError> {
        Exporter::start_on(settings, vec![listener], options)
    }

    /// Starts polling and serving on every one of `listeners` (at least one).
    pub fn start_on(
        settings: &Settings,
        listeners: Vec<TcpListener>,
        options: Options,
    ) -> Result<Exporter, StartError> {
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Listener)?;
        let addr = *addrs.first().ok_or_else(|| {
            StartError::Listener(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no listener",
            ))
        })?;
        for warning in scheduler::capacity_warnings(settings) {
            tracing::warn!("{warning}");
        }
        let polling = Polling::start().map_err(StartError::Polling)?;
        let store = Arc::new(Store::new(settings.poll.stale_after));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (reloads, requests) = ReloadHandle::channel();
        let state = Arc::new(web::WebState {
            store: store.clone(),
            ready: AtomicBool::new(false),
            reload: options.enable_lifecycle.then(|| reloads.clone()),
            security: options.web,
            telemetry_path: options.telemetry_path,
        });
        // The server first: its accept loops are queued before a first round of polls that
        // may be thousands of calls long.
        for listener in listeners {
            tracker.spawn(web::serve(listener, state.clone(), cancel.clone()));
        }
        let scheduler = match Scheduler::start(
            settings,
            store.clone(),
            &cancel,
            &tracker,
            &polling.handle(),
        ) {
            Ok(scheduler) => scheduler,
            Err(e) => {
                cancel.cancel();
                return Err(StartError::HttpClient(e));
            }
        };
        let first_polls = scheduler.first_polls();
        store.record_reload(true);
        // Discovery runs beside polling; what it finds goes through the reload loop, which
        // owns the scheduler.
        let (discovery, settings_rx) = watch::channel(Arc::new(discovering(settings)));
        let (found_tx, found) = mpsc::channel(16);
        tracker.spawn(discover::run(
            settings_rx,
            found_tx,
            scheduler.http_clients(),
            cancel.clone(),
        ));
        tracker.spawn(reload_loop(
            Reloads {
                requests,
                found,
                discovery,
            },
            scheduler,
            options.loader,
            (
                settings.listen_addresses.clone(),
                settings
                    .accounts
                    .iter()
                    .any(|a| a.discover.is_some())
                    .then(|| settings.clone()),
            ),
            store.clone(),
            cancel.clone(),
        ));
        // Ready once every credential has been tried: the first poll of each budget ended.
        let (ready, stopping) = (state.clone(), cancel.clone());
        tracker.spawn(async move {
            tokio::select! {
                () = first_polls.wait() => ready.ready.store(true, Ordering::Release),
                () = stopping.cancelled() => {}
            }
        });
        tracker.spawn(memory::release_every(memory::PERIOD, cancel.clone()));
        tracker.close();
        let listening: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        tracing::info!(%addr, addrs = %listening.join(", "), targets = settings.targets().count(), accounts = settings.accounts.len(), "exporter started");
        Ok(Exporter {
            addr,
            addrs,
            store,
            state,
            reloads,
            cancel,
            tracker,
            polling,
        })
    }

    /// Reloads the configuration (as on SIGHUP). On error the running one stays.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        self.reloads.reload().await
    }

    /// Stops polling and serving; in-flight scrapes are given a few seconds to finish.
    pub async fn shutdown(self) {
        self.state.ready.store(false, Ordering::Release);
        self.cancel.cancel();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("tasks still running after {SHUTDOWN_TIMEOUT:?}; exiting anyway");
        }
        // The workers ended (or were given up on): their runtime goes, with any leftover.
        drop(self.polling);
    }
}

/// Reads and validates the configuration on a blocking thread: files are read and secrets
/// resolved there, not on the runtime's few workers.
async fn load(loader: Option<&Loader>) -> Result<Settings, ReloadError> {
    let loader = loader.ok_or(ReloadError::NoSource)?.clone();
    match tokio::task::spawn_blocking(move || loader()).await {
        Ok(loaded) => loaded.map_err(ReloadError::from),
        Err(e) if e.is_panic() => Err(ReloadError::Config(ConfigError::Load(
            "reading the configuration failed unexpectedly".into(),
        ))),
        Err(_) => Err(ReloadError::ShuttingDown),
    }
}

/// What the reload loop listens to and tells.
struct Reloads {
    /// Reload requests (SIGHUP, `/-/reload`).
    requests: mpsc::Receiver<ReloadRequest>,
    /// What discovery found.
    found: mpsc::Receiver<Found>,
    /// The loaded configuration, for discovery.
    discovery: watch::Sender<Arc<Settings>>,
}

/// Only the accounts of `settings` that discover, without their targets: what discovery
/// needs to know, without a copy of thousands of targets.
fn discovering(settings: &Settings) -> Settings {
    Settings {
        listen_addresses: settings.listen_addresses.clone(),
        poll: settings.poll,
        accounts: settings
            .accounts
            .iter()
            .filter(|a| a.discover.is_some())
            .map(|a| crate::config::Account {
                targets: Vec::new(),
                listings: Vec::new(),
                ..a.clone()
            })
            .collect(),
    }
}

/// The projects found by accounts that discover, and what the scheduler runs on.
struct Discovered {
    /// The loaded configuration, kept only while an account discovers (it is what the
    /// found projects are added to).
    base: Option<Settings>,
    /// The last successful discovery of each discovering account.
    found: HashMap<String, Vec<Project>>,
}

impl Discovered {
    /// The configuration with the discovered projects added.
    fn effective(&self) -> Settings {
        match &self.base {
            Some(base) => discover::expand(base, &self.found),
            None => unreachable!("only called while an account discovers"),
        }
    }

    /// A discovery ended: `true` when the scheduler must move to [`Discovered::effective`].
    fn take(&mut self, done: Found, store: &Store) -> bool {
        let discovering = self.base.as_ref().is_some_and(|base| {
            base.accounts
                .iter()
                .any(|a| a.name == done.account && a.discover.is_some())
        });
        if !discovering {
            return false;
        }
        match done.result {
            Ok(projects) => {
                store.set_discovered(&done.account, Some(projects.len()));
                let before = self.found.get(&done.account);
                if before == Some(&projects) {
                    return false;
                }
                let old: std::collections::HashSet<&str> = before
                    .map(|ps| ps.iter().map(|p| p.id.as_str()).collect())
                    .unwrap_or_default();
                let added = projects
                    .iter()
                    .filter(|p| !old.contains(p.id.as_str()))
                    .count();
                let removed = old.len() + added - projects.len();
                tracing::info!(account = %done.account, projects = projects.len(), added, removed, "projects discovered");
                self.found.insert(done.account, projects);
                true
            }
            Err(e) => {
                tracing::warn!(account = %done.account, error = %e, "project discovery failed; the last list stays until the next refresh");
                store.record_discovery_failure(&done.account, &done.region, e.reason());
                false
            }
        }
    }

    /// A new configuration: lists of accounts that no longer discover are forgotten.
    fn reloaded(&mut self, new: Settings, store: &Store) {
        self.found.retain(|name, _| {
            let keep = new
                .accounts
                .iter()
                .any(|a| &a.name == name && a.discover.is_some());
            if !keep {
                store.set_discovered(name, None);
            }
            keep
        });
        self.base = new
            .accounts
            .iter()
            .any(|a| a.discover.is_some())
            .then_some(new);
    }
}

/// Owns the scheduler; reloads run here one at a time, whoever asked for them, and so do
/// the changes discovery finds.
async fn reload_loop(
    mut channels: Reloads,
    mut scheduler: Scheduler,
    loader: Option<Loader>,
    (mut listening, base): (Vec<ListenAddress>, Option<Settings>),
    store: Arc<Store>,
    cancel: CancellationToken,
) {
    let mut state = Discovered {
        base,
        found: HashMap::new(),
    };
    loop {
        let reply = tokio::select! {
            () = cancel.cancelled() => return,
            done = channels.found.recv() => {
                if let Some(done) = done {
                    if state.take(done, &store) {
                        scheduler.apply(&state.effective()).await;
                    }
                }
                continue;
            }
            request = channels.requests.recv() => match request {
                Some(reply) => reply,
                None => return,
            },
        };
        let result = match load(loader.as_ref()).await {
            Err(e) => Err(e),
            Ok(new) => {
                if new.listen_addresses != listening {
                    let show = |a: &[ListenAddress]| {
                        a.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    tracing::warn!(running = %show(&listening), configured = %show(&new.listen_addresses), "web.listen_address changed; it takes effect at the next restart");
                }
                listening.clone_from(&new.listen_addresses);
                tracing::info!(
                    targets = new.targets().count(),
                    accounts = new.accounts.len(),
                    "configuration reloaded"
                );
                let discovery = discovering(&new);
                state.reloaded(new.clone(), &store);
                if state.base.is_some() {
                    scheduler.apply(&state.effective()).await;
                } else {
                    scheduler.apply(&new).await;
                }
                drop(new);
                let _ = channels.discovery.send(Arc::new(discovery));
                Ok(())
            }
        };
        store.record_reload(result.is_ok());
        if let Err(e) = &result {
            for line in e.to_string().lines() {
                tracing::error!("reload failed, the running configuration stays: {line}");
            }
        }
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's name and nice value, from `/proc/thread-self/stat`.
    #[cfg(target_os = "linux")]
    fn thread_nice() -> (Option<String>, i64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the name in parentheses; the nice value is field 19 of the line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
        (std::thread::current().name().map(str::to_string), nice)
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beside_a_multi_threaded_runtime_polling_gets_a_lower_priority_thread() {
        let (_, serving_nice) = thread_nice();
        let polling = Polling::start().unwrap();
        let (name, nice) = polling
            .handle()
            .spawn(async { thread_nice() })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("poller"));
        assert_eq!(nice, (serving_nice + 5).min(19));
    }

    #[tokio::test]
    async fn on_a_single_threaded_runtime_polling_stays_on_it() {
        let polling = Polling::start().unwrap();
        assert!(polling.0.is_none());
        let name = polling
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert_ne!(name.as_deref(), Some("poller"));
    }
}
