//! The status page: a summary per account (targets up, down, stale and pending, the rate
//! budget's use, suspensions and pauses), every target with its state, values, last error
//! and next poll, and every registry listing with its state and registry count. The page is plain HTML with a little script that reads
//! `/status.json` and refreshes without reloading; the JSON is built here from the store.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::metrics::{AccountStatus, ListingStatus, Store, TargetStatus};
use crate::model::{Listing, Target};

/// The page: static, everything it shows comes from `/status.json`.
pub(super) const PAGE: &str = include_str!("status.html");

/// Where a target stands, most severe first.
fn state(s: &TargetStatus) -> &'static str {
    state_of(s.stale, s.up)
}

/// Where a target or a listing stands: stale, down, pending or up.
fn state_of(stale: bool, up: Option<bool>) -> &'static str {
    match (stale, up) {
        (true, _) => "stale",
        (false, Some(false)) => "down",
        (false, None) => "pending",
        (false, Some(true)) => "up",
    }
}

/// Seconds from `now` back to `t` (negative when `t` is ahead).
fn seconds_since(now: SystemTime, t: SystemTime) -> i64 {
    match now.duration_since(t) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn target(now: SystemTime, t: &Target, s: &TargetStatus) -> Value {
    let values = s.last.filter(|_| !s.stale);
    json!({
        "project_id": t.project_id,
        "enterprise_project_id": t.enterprise_project_id.as_deref().unwrap_or(""),
        "registry_type": t.label_values()[4],
        "state": state(s),
        "fail": values.map(|v| v.fail_num),
        "success": values.map(|v| v.success_num),
        "last_success": s.last_success.map(time),
        "last_success_ago_s": s.last_success.map(|at| seconds_since(now, at)),
        "last_error": s.last_error,
        "next_poll": s.next_poll.map(time),
        "next_poll_in_s": s.next_poll.map(|at| -seconds_since(now, at)),
    })
}

fn listing(now: SystemTime, l: &Listing, s: &ListingStatus) -> Value {
    json!({
        "project_id": l.project_id,
        "enterprise_project_id": l.enterprise_project_id.as_deref().unwrap_or(""),
        "state": state_of(s.stale, s.up),
        "registries": s.registries.filter(|_| !s.stale),
        "last_success": s.last_success.map(time),
        "last_success_ago_s": s.last_success.map(|at| seconds_since(now, at)),
        "last_error": s.last_error,
    })
}

fn budget(now: SystemTime, b: &AccountStatus) -> Value {
    json!({
        "name": &*b.budget,
        "shares_with": &*b.shares_with,
        "calls_last_minute": b.calls_last_minute,
        "limit": b.limit,
        "suspended": b.suspended,
        "paused_until": b.paused_until.map(time),
        "paused_until_in_s": b.paused_until.map(|at| -seconds_since(now, at)),
    })
}

/// One account on the page: its credential, its targets and their counts by state.
#[derive(Default)]
struct Account {
    status: AccountStatus,
    targets: Vec<Value>,
    /// Its registry listings (`registries: true`).
    listings: Vec<Value>,
    up: usize,
    down: usize,
    stale: usize,
    pending: usize,
    /// Targets whose last values count failing registries.
    failing: usize,
}

/// `/status.json`: every configured account with its counts, its budget and its targets.
pub(super) fn json(store: &Store, telemetry_path: &str) -> String {
    let now = SystemTime::now();
    let mut accounts: BTreeMap<(String, String), Account> = store
        .account_statuses()
        .into_iter()
        .map(|(key, status)| {
            let account = Account {
                status,
                ..Account::default()
            };
            (key, account)
        })
        .collect();
    for (t, s) in store.statuses() {
        let Some(a) = accounts.get_mut(&(t.account.clone(), t.region.clone())) else {
            continue;
        };
        *match state(&s) {
            "up" => &mut a.up,
            "down" => &mut a.down,
            "stale" => &mut a.stale,
            _ => &mut a.pending,
        } += 1;
        if !s.stale && s.last.is_some_and(|v| v.fail_num > 0) {
            a.failing += 1;
        }
        a.targets.push(target(now, &t, &s));
    }
    for (l, s) in store.listing_statuses() {
        if let Some(a) = accounts.get_mut(&(l.account.clone(), l.region.clone())) {
            a.listings.push(listing(now, &l, &s));
        }
    }
    let accounts: Vec<Value> = accounts
        .into_iter()
        .map(|((account, region), a)| {
            json!({
                "account": account,
                "region": region,
                "counts": {
                    "targets": a.targets.len(),
                    "up": a.up,
                    "down": a.down,
                    "stale": a.stale,
                    "pending": a.pending,
                    "failing": a.failing,
                },
                "budget": budget(now, &a.status),
                "targets": a.targets,
                "listings": a.listings,
            })
        })
        .collect();
    let insecure: Vec<Value> = store
        .insecure_tls()
        .into_iter()
        .map(|a| json!({"account": a.account, "region": a.region, "endpoint": a.endpoint}))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generated": time(now),
        "telemetry_path": telemetry_path,
        // Accounts whose TLS certificates are not checked (`tls.insecure_skip_verify`).
        "insecure_tls": insecure,
        "accounts": accounts,
    })
    .to_string()
}
