//! Faults the simulator injects: which requests a rule matches, and what it does to them.

use std::time::Duration;

/// What a fault rule does to a request it matches.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and an error body.
    Status(u16),
    /// Answer 429 `APIGW.0308`, with `Retry-After` when given (seconds).
    Throttle { retry_after: Option<u64> },
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
    pub fault: Fault,
    pub project_id: Option<String>,
    /// Matches the raw `registry_type` parameter; `"all"` matches requests without one.
    pub registry_type: Option<String>,
    pub period: u32,
    pub burst: u32,
    pub times: Option<u32>,
    matched: u32,
    fired: u32,
}

impl FaultRule {
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            fault,
            project_id: None,
            registry_type: None,
            period: 1,
            burst: 1,
            times: None,
            matched: 0,
            fired: 0,
        }
    }
    pub fn project(mut self, project_id: &str) -> Self {
        self.project_id = Some(project_id.to_string());
        self
    }
    pub fn registry_type(mut self, t: &str) -> Self {
        self.registry_type = Some(t.to_string());
        self
    }
    /// Fires on the first `burst` of every `period` matching requests.
    pub fn pattern(mut self, burst: u32, period: u32) -> Self {
        self.burst = burst;
        self.period = period.max(1);
        self
    }
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub(super) fn applies(&mut self, project_id: &str, registry_type: Option<&str>) -> bool {
        let project_ok = self.project_id.as_deref().is_none_or(|p| p == project_id);
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
