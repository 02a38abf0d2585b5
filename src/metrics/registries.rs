//! The per-registry detail: the latest listing of every project polled with
//! `registries: true`, and its series. Each listing keeps its encoded lines per family, so a
//! listing whose registries did not change re-encodes only its timestamp line; each family's
//! run is assembled again only when one of its listings changed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::exposition::{escape_label, write_seconds, write_time, write_u64, Run, Segment};
use crate::model::{Listing, Registry, RegistryStatus};

/// The per-registry families, in the order they are written, with their help texts.
pub(super) const FAMILIES: [(&str, &str); FAMILY_COUNT] = [
    (
        "hss_registry_info",
        "Always 1 for each registry of a listed project; the labels name it, its type, address and the cluster that carries its connection.",
    ),
    (
        "hss_registry_status",
        "The registry's connection status as a state set: 1 for the current status (success, fail, accessing), 0 for the others.",
    ),
    (
        "hss_registry_fail_reason",
        "1 with the reason HSS gives (fail_reason) while the registry's access fails; absent otherwise.",
    ),
    (
        "hss_registry_images",
        "Images of the registry known to HSS (images_num).",
    ),
    (
        "hss_registry_last_sync_timestamp_seconds",
        "Unix time of the registry's last image sync (latest_sync_time).",
    ),
    (
        "hss_registry_detail_up",
        "1 if the last listing of this project's registries succeeded, 0 if it failed.",
    ),
    (
        "hss_registry_detail_last_success_timestamp_seconds",
        "Unix time of the last successful listing of this project's registries.",
    ),
];
/// How many per-registry families.
pub(super) const FAMILY_COUNT: usize = 7;
/// The families encoded from the registries themselves (not from the listing's state).
const REGISTRY_FAMILIES: std::ops::Range<usize> = 0..5;
const UP: usize = 5;
const LAST_SUCCESS: usize = 6;

/// Where a listing stands, for tests, `once` and the logs.
#[derive(Debug, Clone, Default)]
pub struct ListingStatus {
    /// `None` until the first listing ends.
    pub up: Option<bool>,
    /// How many registries the last successful listing had.
    pub registries: Option<usize>,
    /// The registries of the last successful listing, sorted by ID, until their lines are
    /// encoded: the lines are what is kept, not the registries too.
    pending: Option<Arc<Vec<Registry>>>,
    /// A hash of the last successful listing's registries: a listing with the same ones
    /// changes no line.
    digest: Option<u64>,
    /// When the last successful listing ended.
    pub last_success: Option<SystemTime>,
    /// Monotonic twin of `last_success`, what staleness is measured with.
    last_success_at: Option<Instant>,
    /// Why the last listing failed.
    pub last_error: Option<String>,
    /// The registry series were removed for lack of a recent success.
    pub stale: bool,
}

/// A listing's state and its encoded lines per family (`None` once they changed).
#[derive(Default)]
struct Entry {
    status: ListingStatus,
    encoded: [Option<Arc<Segment>>; FAMILY_COUNT],
}

/// Every listing, in label order, and each family's assembled run.
#[derive(Default)]
pub(super) struct Listings {
    map: BTreeMap<Listing, Entry>,
    runs: [Option<Arc<Run>>; FAMILY_COUNT],
}

impl Listings {
    fn invalidate(&mut self, listing: &Listing, families: impl IntoIterator<Item = usize>) {
        if let Some(entry) = self.map.get_mut(listing) {
            for family in families {
                entry.encoded[family] = None;
                self.runs[family] = None;
            }
        }
    }

    /// Adds the listings not yet known; returns whether any was.
    pub(super) fn add<'a>(&mut self, listings: impl IntoIterator<Item = &'a Listing>) -> bool {
        let mut added = false;
        for listing in listings {
            if !self.map.contains_key(listing) {
                self.map.insert(listing.clone(), Entry::default());
                added = true;
            }
        }
        if added {
            self.runs = Default::default();
        }
        added
    }

    /// Forgets the listings not in `keep`, with all their series; returns them.
    pub(super) fn retain(&mut self, keep: &HashSet<&Listing>) -> Vec<Listing> {
        let gone: Vec<Listing> = self
            .map
            .keys()
            .filter(|l| !keep.contains(l))
            .cloned()
            .collect();
        for listing in &gone {
            self.map.remove(listing);
        }
        if !gone.is_empty() {
            self.runs = Default::default();
        }
        gone
    }

    /// A successful listing; `false` for a listing no longer configured.
    pub(super) fn succeeded(&mut self, listing: &Listing, mut registries: Vec<Registry>) -> bool {
        let Some(entry) = self.map.get_mut(listing) else {
            return false;
        };
        registries.sort_by(|a, b| a.id.cmp(&b.id));
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            registries.hash(&mut h);
            h.finish()
        };
        let s = &mut entry.status;
        let same = !s.stale && s.digest == Some(digest);
        let was_up = s.up;
        s.up = Some(true);
        if !same {
            s.registries = Some(registries.len());
            s.digest = Some(digest);
            s.pending = Some(Arc::new(registries));
        }
        s.last_success = Some(SystemTime::now());
        s.last_success_at = Some(Instant::now());
        s.last_error = None;
        s.stale = false;
        let mut changed = vec![LAST_SUCCESS];
        if was_up != Some(true) {
            changed.push(UP);
        }
        if !same {
            changed.extend(REGISTRY_FAMILIES);
        }
        self.invalidate(listing, changed);
        true
    }

    /// A failed listing (or one not made): down, the last good registries kept until stale.
    /// `false` for a listing no longer configured.
    pub(super) fn failed(&mut self, listing: &Listing, why: &str) -> bool {
        let Some(entry) = self.map.get_mut(listing) else {
            return false;
        };
        let was_up = entry.status.up;
        entry.status.up = Some(false);
        entry.status.last_error = Some(why.to_string());
        if was_up != Some(false) {
            self.invalidate(listing, [UP]);
        }
        true
    }

    /// Marks stale the listings whose last success is `stale_after` old at `now`; returns
    /// them.
    pub(super) fn expire(&mut self, now: Instant, stale_after: Duration) -> Vec<Listing> {
        let expired: Vec<Listing> = self
            .map
            .iter()
            .filter(|(_, e)| {
                !e.status.stale
                    && e.status
                        .last_success_at
                        .is_some_and(|at| now.duration_since(at) >= stale_after)
            })
            .map(|(l, _)| l.clone())
            .collect();
        for listing in &expired {
            if let Some(entry) = self.map.get_mut(listing) {
                entry.status.stale = true;
            }
            self.invalidate(listing, REGISTRY_FAMILIES);
        }
        expired
    }

    /// Every listing with its state.
    pub(super) fn statuses(&self) -> Vec<(Listing, ListingStatus)> {
        self.map
            .iter()
            .map(|(l, e)| (l.clone(), e.status.clone()))
            .collect()
    }

    /// The families' runs, encoding the lines that changed since the last call. Empty when
    /// no listing is configured, so that exporters without detail show no such family.
    pub(super) fn runs(&mut self, headers: &[Arc<Run>; FAMILY_COUNT]) -> Vec<Arc<Run>> {
        if self.map.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(2 * FAMILY_COUNT);
        let mut scratch = Vec::new();
        for (family, header) in headers.iter().enumerate() {
            let run = if let Some(run) = &self.runs[family] {
                run.clone()
            } else {
                let segments = self
                    .map
                    .iter_mut()
                    .map(|(listing, entry)| {
                        entry.encoded[family]
                            .get_or_insert_with(|| {
                                scratch.clear();
                                encode(family, listing, &entry.status, &mut scratch);
                                Segment::new(scratch.clone())
                            })
                            .clone()
                    })
                    .collect();
                self.runs[family].insert(Run::new(segments)).clone()
            };
            out.push(header.clone());
            out.push(run);
        }
        // Every family is encoded now: the registries themselves are no longer needed.
        for entry in self.map.values_mut() {
            if entry.encoded[REGISTRY_FAMILIES].iter().all(Option::is_some) {
                entry.status.pending = None;
            }
        }
        out
    }
}

/// The families' HELP and TYPE lines.
pub(super) fn headers() -> [Arc<Run>; FAMILY_COUNT] {
    FAMILIES.map(|(name, help)| {
        Run::new(vec![Segment::new(
            format!("# HELP {name} {help}\n# TYPE {name} gauge\n").into_bytes(),
        )])
    })
}

/// One line: `name{labels} value`, the labels sorted by name as the text format has them.
fn line(
    out: &mut Vec<u8>,
    name: &str,
    labels: &mut [(&str, &str)],
    value: impl FnOnce(&mut Vec<u8>),
) {
    labels.sort_unstable_by_key(|(k, _)| *k);
    out.extend_from_slice(name.as_bytes());
    for (i, (k, v)) in labels.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"{" } else { b"," });
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label(v, out);
        out.push(b'"');
    }
    out.extend_from_slice(b"} ");
    value(out);
    out.push(b'\n');
}

/// The lines of one family for one listing.
fn encode(family: usize, listing: &Listing, status: &ListingStatus, out: &mut Vec<u8>) {
    let name = FAMILIES[family].0;
    let [account, region, project, eps] = listing.label_values();
    let base = [
        ("account", account),
        ("region", region),
        ("project_id", project),
        ("enterprise_project_id", eps),
    ];
    match family {
        UP => {
            if let Some(up) = status.up {
                line(out, name, &mut base.clone(), |o| {
                    o.push(if up { b'1' } else { b'0' });
                });
            }
        }
        LAST_SUCCESS => {
            if let Some(t) = status.last_success {
                line(out, name, &mut base.clone(), |o| write_time(t, o));
            }
        }
        _ => {
            let Some(registries) = status.pending.as_deref().filter(|_| !status.stale) else {
                return;
            };
            for r in registries {
                let mut labels: Vec<(&str, &str)> = base.to_vec();
                labels.push(("registry_id", &r.id));
                match family {
                    0 => {
                        labels.extend([
                            ("registry_name", r.name.as_str()),
                            ("registry_type", r.registry_type.as_str()),
                            ("registry_addr", r.addr.as_str()),
                            ("connect_cluster_id", r.connect_cluster_id.as_str()),
                        ]);
                        line(out, name, &mut labels, |o| o.push(b'1'));
                    }
                    1 => {
                        for state in RegistryStatus::ALL {
                            let mut labels = labels.clone();
                            labels.push(("status", state.as_str()));
                            let on = r.status == Some(state);
                            line(out, name, &mut labels, |o| {
                                o.push(if on { b'1' } else { b'0' });
                            });
                        }
                    }
                    2 => {
                        if r.status == Some(RegistryStatus::Fail) {
                            labels.push(("reason", r.fail_reason.as_str()));
                            line(out, name, &mut labels, |o| o.push(b'1'));
                        }
                    }
                    3 => {
                        if let Some(n) = r.images_num {
                            line(out, name, &mut labels, |o| {
                                write_u64(n, o);
                            });
                        }
                    }
                    _ => {
                        if let Some(ms) = r.latest_sync_time_ms {
                            line(out, name, &mut labels, |o| {
                                // Decoded from an unsigned field: never negative.
                                let ms = u64::try_from(ms).unwrap_or(0);
                                write_seconds(ms / 1000, (ms % 1000) as u32, o);
                            });
                        }
                    }
                }
            }
        }
    }
}
