//! The target table: the latest state of every configured target, in label order, with the
//! bookkeeping that tells the encoder which group's lines of which family changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::encode::{samples, Group, RUN};
use super::exposition::Run;
use crate::model::{Statistics, Target};

/// Where a target stands, for the status page.
#[derive(Debug, Clone, Default)]
pub struct TargetStatus {
    /// `None` until the first poll ends.
    pub up: Option<bool>,
    /// The counts of the last successful poll.
    pub last: Option<Statistics>,
    /// When the last successful poll ended.
    pub last_success: Option<SystemTime>,
    /// Monotonic twin of `last_success`, what staleness is measured with.
    pub(super) last_success_at: Option<Instant>,
    /// Why the last poll failed, or why the target was not polled.
    pub last_error: Option<String>,
    /// When the target is polled next (a pause included).
    pub next_poll: Option<SystemTime>,
    /// The value series were removed for lack of a recent success.
    pub stale: bool,
}

/// A target's state and the group it is encoded in.
pub(super) struct Entry {
    pub(super) status: TargetStatus,
    pub(super) group: usize,
}

/// Every target, and its encoding cut into groups and runs.
#[derive(Default)]
pub(super) struct Targets {
    /// Keys are shared with the encoder, which copies a group's members out of the lock.
    pub(super) map: BTreeMap<Arc<Target>, Entry>,
    pub(super) groups: Vec<Group>,
    /// Per family, the runs of `RUN` groups' segments, assembled again after a change.
    pub(super) runs: [Vec<Option<Arc<Run>>>; 4],
    /// Targets came or went: the groups must be formed again.
    pub(super) regroup: bool,
    /// Bumped whenever the groups are formed again, so that an encoding that started
    /// before does not store its pieces into groups that are no longer the same.
    pub(super) layout: u64,
}

impl Targets {
    /// Runs `f` on a target's status and forgets the encoding of the families whose lines
    /// it changed. Returns whether any did, `None` for a target that is not configured.
    pub(super) fn touch(
        &mut self,
        target: &Target,
        f: impl FnOnce(&mut TargetStatus),
    ) -> Option<bool> {
        let entry = self.map.get_mut(target)?;
        let before = samples(&entry.status);
        f(&mut entry.status);
        let after = samples(&entry.status);
        if before == after {
            return Some(false);
        }
        if !self.regroup {
            if let Some(g) = self.groups.get_mut(entry.group) {
                for (family, (b, a)) in before.iter().zip(&after).enumerate() {
                    if b != a {
                        g.encoded[family] = None;
                        g.version[family] += 1;
                        if let Some(run) = self.runs[family].get_mut(entry.group / RUN) {
                            *run = None;
                        }
                    }
                }
            }
        }
        Some(true)
    }

    /// Adds the targets not yet known, with no state; returns how many were new.
    pub(super) fn add<'a>(&mut self, targets: impl IntoIterator<Item = &'a Target>) -> usize {
        // Built apart and appended: one sorted merge instead of a map insert per target.
        let mut fresh: BTreeMap<Arc<Target>, Entry> = targets
            .into_iter()
            .filter(|target| !self.map.contains_key(*target))
            .map(|target| {
                (
                    Arc::new(target.clone()),
                    Entry {
                        status: TargetStatus::default(),
                        group: 0,
                    },
                )
            })
            .collect();
        let added = fresh.len();
        if added > 0 {
            self.map.append(&mut fresh);
            self.regroup = true;
        }
        added
    }

    /// Forgets the targets `keep` says no to; returns them.
    pub(super) fn retain(&mut self, keep: impl Fn(&Target) -> bool) -> Vec<Target> {
        let gone: Vec<Arc<Target>> = self.map.keys().filter(|k| !keep(k)).cloned().collect();
        for target in &gone {
            self.map.remove(target);
            self.regroup = true;
        }
        gone.into_iter().map(Arc::unwrap_or_clone).collect()
    }

    /// Marks stale the targets whose last success is `stale_after` old at `now`; returns
    /// them.
    pub(super) fn expire(&mut self, now: Instant, stale_after: Duration) -> Vec<Target> {
        let expired: Vec<Target> = self
            .map
            .iter()
            .filter(|(_, e)| {
                !e.status.stale
                    && e.status
                        .last_success_at
                        .is_some_and(|at| now.duration_since(at) >= stale_after)
            })
            .map(|(target, _)| Target::clone(target))
            .collect();
        for target in &expired {
            self.touch(target, |status| status.stale = true);
        }
        expired
    }
}
