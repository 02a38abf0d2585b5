//! Faults the simulator injects: which requests a rule matches, and what it does to them.

use std::time::Duration;

/// What a fault rule does to a request it matches.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and an error body.
    Status(u16),
    /// Answer 429 `APIGW.0308`, with `Retry-After` when given (seconds).
    Throttle {
        /// Seconds, for the `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Send the headers and part of the body, then break the connection.
    Reset,
    /// Answer 200 with this body.
    Body(String),
}

/// A fault applied to matching requests: to the first `burst` of every `period` matches
/// (1 of 1: every match), at most `times` times.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// What happens to a matching request.
    pub fault: Fault,
    /// Matches requests for this project only.
    pub project_id: Option<String>,
    /// Matches the raw `registry_type` parameter; `"all"` matches requests without one.
    pub registry_type: Option<String>,
    /// Matches registry listings only (`true`) or statistics calls only (`false`).
    pub listing: Option<bool>,
    /// Matches requests whose raw query string contains this.
    pub query: Option<String>,
    /// Matches IAM's project listing instead of HSS calls.
    pub iam: bool,
    /// Of every `period` matches, the first `burst` fire.
    pub period: u32,
    /// See `period`.
    pub burst: u32,
    /// At most this many fire in all.
    pub times: Option<u32>,
    /// Matches so far, for the pattern.
    matched: u32,
    /// Fired so far, for `times`.
    fired: u32,
}

impl FaultRule {
    /// `fault` on every request.
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            fault,
            project_id: None,
            registry_type: None,
            listing: None,
            query: None,
            iam: false,
            period: 1,
            burst: 1,
            times: None,
            matched: 0,
            fired: 0,
        }
    }
    /// Only for `project_id`.
    #[must_use]
    pub fn project(mut self, project_id: &str) -> Self {
        self.project_id = Some(project_id.to_string());
        self
    }
    /// Only for this raw `registry_type` parameter (`"all"`: requests without one).
    #[must_use]
    pub fn registry_type(mut self, t: &str) -> Self {
        self.registry_type = Some(t.to_string());
        self
    }
    /// Only for registry listings (`true`) or only for statistics calls (`false`).
    #[must_use]
    pub fn listing(mut self, listing: bool) -> Self {
        self.listing = Some(listing);
        self
    }
    /// For IAM's project listing (`GET /v3/auth/projects`) instead of HSS calls.
    #[must_use]
    pub fn iam(mut self) -> Self {
        self.iam = true;
        self
    }
    /// Only for requests whose raw query string contains `text` (`offset=200`).
    #[must_use]
    pub fn query_contains(mut self, text: &str) -> Self {
        self.query = Some(text.to_string());
        self
    }
    /// Fires on the first `burst` of every `period` matching requests.
    #[must_use]
    pub fn pattern(mut self, burst: u32, period: u32) -> Self {
        self.burst = burst;
        self.period = period.max(1);
        self
    }
    /// At most `n` times in all.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub(super) fn applies(
        &mut self,
        project_id: &str,
        registry_type: Option<&str>,
        listing: bool,
        query: &str,
        iam: bool,
    ) -> bool {
        let project_ok = self.iam == iam
            && self.project_id.as_deref().is_none_or(|p| p == project_id)
            && self.listing.is_none_or(|l| l == listing)
            && self.query.as_deref().is_none_or(|q| query.contains(q));
        let type_ok = self
            .registry_type
            .as_deref()
            .is_none_or(|t| t == registry_type.unwrap_or("all"));
        if !project_ok || !type_ok || self.times.is_some_and(|n| self.fired >= n) {
            return false;
        }
        let position = self.matched % self.period;
        self.matched += 1;
        let fire = position < self.burst;
        self.fired += u32::from(fire);
        fire
    }
}
