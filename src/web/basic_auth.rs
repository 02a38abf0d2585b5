//! `basic_auth_users`: bcrypt hashes checked without ever delaying start-up, and without a
//! flood of wrong passwords delaying a scraper whose credentials are already verified.
//!
//! - Nothing is hashed at start. An unknown user is checked against the hash of a
//!   configured user of the lowest cost (picked by the name), so it costs what a known user
//!   costs.
//! - Verified credentials are cached per user, apart from the failures: no number of wrong
//!   passwords can push them out.
//! - At most a few bcrypt checks run at once (half the cores), and each user, and all
//!   unknown users together, queue one check at a time for them: a flood of wrong passwords
//!   waits behind its own gate, not in front of other users' first checks. A check that
//!   cannot start within [`WAIT`] is refused.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::secret::Secret;

/// Verified passwords kept per user (bcrypt reads only 72 bytes, so several texts can match).
const VERIFIED_PER_USER: usize = 4;
/// Failed (user, password) pairs remembered, so a repeated wrong password costs no bcrypt.
const FAILURES_KEPT: usize = 4096;
/// How long a check may wait for its turn before it is refused.
const WAIT: Duration = Duration::from_secs(5);

/// The users of one web config and what has been verified for them.
pub(super) struct BasicAuth {
    /// user → bcrypt hash.
    users: BTreeMap<String, String>,
    /// Keys the cache entries, so the cache never holds a plain digest of a password.
    key: [u8; 32],
    verified: Mutex<HashMap<String, VecDeque<[u8; 32]>>>,
    failed: Mutex<Failures>,
    /// One check at a time per user, and one for every unknown user together.
    user_gates: HashMap<String, Semaphore>,
    stranger_gate: Semaphore,
    /// Shared by the whole process: at most this many bcrypt checks run at once.
    cpu: Arc<Semaphore>,
}

#[derive(Default)]
struct Failures {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

/// The process-wide bound on bcrypt checks running at once: half the cores, at least one,
/// so that scrapes keep a core while a flood of wrong passwords is checked.
fn cpu_gate() -> Arc<Semaphore> {
    static GATE: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Arc::new(Semaphore::new((cores / 2).max(1)))
    })
    .clone()
}

impl BasicAuth {
    /// `users` must be non-empty, every hash already checked to be bcrypt.
    pub(super) fn new(users: BTreeMap<String, String>) -> BasicAuth {
        let key: [u8; 32] = rand::random();
        let user_gates = users
            .keys()
            .map(|u| (u.clone(), Semaphore::new(1)))
            .collect();
        BasicAuth {
            users,
            key,
            verified: Mutex::new(HashMap::new()),
            failed: Mutex::new(Failures::default()),
            user_gates,
            stranger_gate: Semaphore::new(1),
            cpu: cpu_gate(),
        }
    }

    /// The users and hashes this checks against.
    pub(super) fn users(&self) -> &BTreeMap<String, String> {
        &self.users
    }

    /// Checks an `Authorization` header.
    pub(super) async fn check(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, gate, known) = match (self.users.get(&user), self.user_gates.get(&user)) {
            (Some(h), Some(g)) => (h.clone(), g, true),
            _ => (self.stand_in(&user).to_string(), &self.stranger_gate, false),
        };
        let digest = self.digest(&user, &password, &hash);
        if known && self.is_verified(&user, &digest) {
            return true;
        }
        if self.has_failed(&digest) {
            return false;
        }
        let permits = async {
            let mine = gate.acquire().await.ok()?;
            let cpu = self.cpu.clone().acquire_owned().await.ok()?;
            Some((mine, cpu))
        };
        let Ok(Some((_mine, cpu))) = tokio::time::timeout(WAIT, permits).await else {
            tracing::debug!("basic auth: check refused, too many waiting");
            return false;
        };
        // Another request may have verified the same credentials while this one waited.
        if known && self.is_verified(&user, &digest) {
            return true;
        }
        let matches = tokio::task::spawn_blocking(move || {
            let _cpu = cpu;
            bcrypt::verify(password.expose(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if matches && known {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            let mine = verified.entry(user).or_default();
            if mine.len() >= VERIFIED_PER_USER {
                mine.pop_front();
            }
            mine.push_back(digest);
            true
        } else {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            if failed.set.insert(digest) {
                failed.order.push_back(digest);
                if failed.order.len() > FAILURES_KEPT {
                    if let Some(old) = failed.order.pop_front() {
                        failed.set.remove(&old);
                    }
                }
            }
            false
        }
    }

    /// The configured hash an unknown user is checked against: one of the cheapest (a
    /// file with one cost-18 user among cost-10 ones must not make every unknown name cost
    /// a cost-18 check), picked by the name, so the same name always costs the same and
    /// what it costs is a real user's cost.
    fn stand_in(&self, user: &str) -> &str {
        let cost = |h: &String| {
            h.parse::<bcrypt::HashParts>()
                .map_or(u32::MAX, |p| p.get_cost())
        };
        let cheapest = self.users.values().map(cost).min().unwrap_or(u32::MAX);
        let candidates: Vec<&String> = self
            .users
            .values()
            .filter(|h| cost(h) == cheapest)
            .collect();
        let pick: [u8; 32] = Sha256::new()
            .chain_update(self.key)
            .chain_update(user.as_bytes())
            .finalize()
            .into();
        let n = usize::from(pick[0]) % candidates.len().max(1);
        candidates.get(n).map_or("", |h| h.as_str())
    }

    fn digest(&self, user: &str, password: &Secret, hash: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.key)
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.expose().as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into()
    }

    fn is_verified(&self, user: &str, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .is_some_and(|d| d.contains(digest))
    }

    fn has_failed(&self, digest: &[u8; 32]) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set
            .contains(digest)
    }
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(value: &http::HeaderValue) -> Option<(String, Secret)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64_STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), Secret::new(password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> http::HeaderValue {
        let v = format!(
            "Basic {}",
            BASE64_STANDARD.encode(format!("{user}:{password}"))
        );
        http::HeaderValue::try_from(v).unwrap()
    }

    #[test]
    fn decodes_basic_credentials() {
        let h = http::HeaderValue::from_static("Basic dXNlcjpwYTpzcw==");
        let (user, password) = parse_basic(&h).unwrap();
        assert_eq!((user.as_str(), password.expose()), ("user", "pa:ss"));
        assert!(parse_basic(&http::HeaderValue::from_static("Bearer x")).is_none());
        assert!(parse_basic(&http::HeaderValue::from_static("Basic !!!")).is_none());
        assert!(parse_basic(&http::HeaderValue::from_static("Basic dXNlcjpwYXNz=")).is_none());
        assert!(parse_basic(&http::HeaderValue::from_static("Basic dXNlcg==")).is_none());
    }

    #[tokio::test]
    async fn verified_credentials_survive_a_flood_of_failures() {
        let users = BTreeMap::from([
            ("alice".to_string(), bcrypt::hash("right", 4).unwrap()),
            ("bob".to_string(), bcrypt::hash("other", 4).unwrap()),
        ]);
        let auth = BasicAuth::new(users);
        assert!(auth.check(Some(&header("alice", "right"))).await);
        assert!(!auth.check(Some(&header("alice", "wrong"))).await);
        assert!(!auth.check(Some(&header("carol", "right"))).await);
        assert!(!auth.check(Some(&header("bob", "right"))).await);
        assert!(!auth.check(None).await);
        for i in 0..(FAILURES_KEPT + 10) {
            // Filling the failure cache directly: bcrypt for each would take too long here.
            let d = auth.digest("alice", &Secret::new(format!("w{i}")), "x");
            let mut f = auth.failed.lock().unwrap();
            f.set.insert(d);
            f.order.push_back(d);
            if f.order.len() > FAILURES_KEPT {
                let old = f.order.pop_front().unwrap();
                f.set.remove(&old);
            }
        }
        assert_eq!(auth.failed.lock().unwrap().set.len(), FAILURES_KEPT);
        let start = std::time::Instant::now();
        assert!(auth.check(Some(&header("alice", "right"))).await);
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "served from the cache"
        );
        // The same name always stands in for the same user.
        assert_eq!(auth.stand_in("mallory"), auth.stand_in("mallory"));
    }
}
