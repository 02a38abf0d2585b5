//! The scrape cache: one encoded exposition shared by every scrape until something
//! changes, encoded on a thread of its own, with the process metrics gathered at most every
//! few seconds.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, OnceLock, TryLockError};
use std::time::Duration;

use tokio::time::Instant;

use super::encode::headers;
use super::exposition::{Exposition, Run};
use super::Store;

/// Process metrics (CPU, memory) in a cached body are at most this old.
const PROCESS_METRICS_MAX_AGE: Duration = Duration::from_secs(5);

/// A scrape waiting for the encoder thread.
struct Job {
    gzip: bool,
    reply: tokio::sync::oneshot::Sender<Arc<Exposition>>,
}

/// What scrapes share.
pub(super) struct Cache {
    /// The last encoding; current while the store's generation has not moved.
    exposition: Mutex<Option<Arc<Exposition>>>,
    /// The thread scrapes have the exposition encoded on, started on first use.
    encoder: OnceLock<Option<mpsc::Sender<Job>>>,
    /// The process metrics apart: they read `/proc`, so their lines are kept for up to
    /// `PROCESS_METRICS_MAX_AGE` instead of being read again on every change.
    process_lines: Mutex<Option<(Instant, Arc<Run>)>>,
    /// The per-target families' HELP and TYPE lines, encoded once.
    headers: [Arc<Run>; 4],
    /// The per-registry families' HELP and TYPE lines.
    registry_headers: [Arc<Run>; super::registries::FAMILY_COUNT],
    /// Reused encoding buffer; segments are copied out of it at their exact size.
    scratch: Mutex<Vec<u8>>,
}

impl Cache {
    pub(super) fn new() -> Self {
        Cache {
            exposition: Mutex::new(None),
            encoder: OnceLock::new(),
            process_lines: Mutex::new(None),
            headers: headers(),
            registry_headers: super::registries::headers(),
            scratch: Mutex::new(Vec::new()),
        }
    }
}

impl Store {
    /// The current exposition for a scrape, with its gzip form ready if asked for. When
    /// something must be encoded, that happens on the store's encoder thread: the serving
    /// threads go on with other connections meanwhile, and the encoded text is always
    /// allocated by one thread, which keeps the allocator from holding a copy's worth of
    /// freed memory per serving thread.
    pub async fn scrape(self: &Arc<Self>, gzip: bool) -> Arc<Exposition> {
        if let Some(e) = self.current().filter(|e| !gzip || e.has_gzip()) {
            return e;
        }
        // A single-threaded runtime has one thread to allocate from anyway, and there a wait
        // on another thread would let a paused test clock jump ahead.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return self.exposition();
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = match self.cache.encoder.get_or_init(|| self.start_encoder().ok()) {
            Some(encoder) => encoder.send(Job { gzip, reply }).is_ok(),
            None => false,
        };
        match rx.await {
            Ok(e) if sent => e,
            // No encoder thread (it could not start, or died): encode here.
            _ => self.exposition(),
        }
    }

    /// The encoder answers every scrape waiting for it with one encoding, done after they
    /// all came in, so scrapes that arrive during a rebuild do not queue a rebuild each.
    fn start_encoder(self: &Arc<Self>) -> std::io::Result<mpsc::Sender<Job>> {
        let (tx, jobs) = mpsc::channel::<Job>();
        // Weak: the thread must not keep the store alive; it ends when the store, which
        // holds the sender, is dropped.
        let store = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let batch: Vec<Job> = std::iter::once(first).chain(jobs.try_iter()).collect();
                    let Some(store) = store.upgrade() else { break };
                    let e = store.exposition();
                    drop(store);
                    if batch.iter().any(|job| job.gzip) {
                        e.prepare_gzip();
                    }
                    if batch.iter().any(|job| !job.gzip) {
                        e.prepare_plain();
                    }
                    for job in batch {
                        let _ = job.reply.send(e.clone());
                    }
                }
            })
            .map(|_| tx)
            .inspect_err(|e| tracing::warn!(error = %e, "cannot start the encoder thread; scrapes encode on their own thread"))
    }

    /// The cached exposition if it is still current; `None` as well while one is being
    /// encoded, rather than wait for it here.
    fn current(&self) -> Option<Arc<Exposition>> {
        let cached = match self.cache.exposition.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        cached.as_ref().filter(|e| self.is_current(e)).cloned()
    }

    /// Nothing changed since `e` was encoded, and its process metrics are recent enough.
    fn is_current(&self, e: &Exposition) -> bool {
        e.generation == self.generation.load(Ordering::Acquire)
            && e.built.elapsed() < PROCESS_METRICS_MAX_AGE
    }

    /// The current exposition, never older than the last change: the per-account part is
    /// encoded again, and of the per-target part only the groups whose targets changed.
    pub fn exposition(&self) -> Arc<Exposition> {
        let mut cached = self
            .cache
            .exposition
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = cached.as_ref().filter(|e| self.is_current(e)) {
            return e.clone();
        }
        // Read before encoding: a change made meanwhile makes this body out of date at once.
        let generation = self.generation.load(Ordering::Acquire);
        // Let the segments of changed groups go before their successors are encoded.
        *cached = None;
        let (process_at, process) = self.process_lines();
        let mut runs = self.own.render();
        runs.push(process);
        // Copied under the table's lock, encoded outside it: polls go on meanwhile.
        let snapshot = self.targets().snapshot();
        let mut scratch = self
            .cache
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (encoded, families) = snapshot.encode(&mut scratch);
        drop(scratch);
        self.targets().keep(&snapshot, &encoded, &families);
        for (header, family) in self.cache.headers.iter().zip(families) {
            runs.push(header.clone());
            runs.extend(family);
        }
        runs.extend(self.listings().runs(&self.cache.registry_headers));
        // A body is as old as its oldest part.
        let fresh = Arc::new(Exposition::new(generation, process_at, runs));
        *cached = Some(fresh.clone());
        fresh
    }

    /// The process families, gathered again once they are `PROCESS_METRICS_MAX_AGE` old.
    fn process_lines(&self) -> (Instant, Arc<Run>) {
        let mut lines = self
            .cache
            .process_lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match lines.as_ref() {
            Some((at, run)) if at.elapsed() < PROCESS_METRICS_MAX_AGE => (*at, run.clone()),
            _ => lines
                .insert((Instant::now(), super::process::render()))
                .clone(),
        }
    }

    /// The whole text exposition in one buffer.
    pub fn render(&self) -> Vec<u8> {
        self.exposition().to_vec()
    }
}
