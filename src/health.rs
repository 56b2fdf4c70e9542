//! Health aggregation for `/liveness` and `/readiness` (reference §7.1).
//!
//! Every long-running task registers a reporter with an optional heartbeat timeout and reports
//! `(live, ready)` as it goes. Overall liveness/readiness is the AND over all reporters; a reporter
//! whose last report is older than its timeout counts as neither live nor ready, which is how a
//! stuck loop fails the liveness probe. Time is passed in so the aggregation is testable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Reporter {
    timeout: Option<Duration>,
    live: bool,
    ready: bool,
    detail: String,
    last_report: Instant,
}

/// Shared registry; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry {
    reporters: Arc<Mutex<BTreeMap<String, Reporter>>>,
}

/// One reporter's row in the health table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterStatus {
    pub name: String,
    pub live: bool,
    pub ready: bool,
    pub timed_out: bool,
    pub detail: String,
}

/// The aggregated view served by the health endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSummary {
    pub live: bool,
    pub ready: bool,
    pub reporters: Vec<ReporterStatus>,
}

impl HealthSummary {
    /// A small fixed-width text table, one reporter per line.
    pub fn table(&self) -> String {
        let width = self
            .reporters
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(0)
            .max("REPORTER".len());
        let mut out = format!("{:<width$}  LIVE   READY  DETAIL\n", "REPORTER");
        for r in &self.reporters {
            let detail = if r.timed_out {
                format!("no report within timeout; {}", r.detail)
            } else {
                r.detail.clone()
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:<5}  {:<5}  {}",
                r.name,
                r.live && !r.timed_out,
                r.ready && !r.timed_out,
                detail.trim_end_matches("; ")
            );
        }
        out
    }
}

impl HealthRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Reporter>> {
        // A poisoned lock only means another thread panicked mid-update; the map is still usable.
        self.reporters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or re-registers) a reporter that starts live but not ready.
    pub fn register(&self, name: &str, timeout: Option<Duration>, now: Instant) {
        self.lock().insert(
            name.to_string(),
            Reporter {
                timeout,
                live: true,
                ready: false,
                detail: String::new(),
                last_report: now,
            },
        );
    }

    /// Records a heartbeat; unknown names are registered without a timeout.
    pub fn report(&self, name: &str, live: bool, ready: bool, detail: &str, now: Instant) {
        let mut reporters = self.lock();
        let entry = reporters.entry(name.to_string()).or_insert(Reporter {
            timeout: None,
            live,
            ready,
            detail: String::new(),
            last_report: now,
        });
        entry.live = live;
        entry.ready = ready;
        entry.detail = detail.to_string();
        entry.last_report = now;
    }

    pub fn summary(&self, now: Instant) -> HealthSummary {
        let reporters: Vec<ReporterStatus> = self
            .lock()
            .iter()
            .map(|(name, r)| {
                let timed_out = r
                    .timeout
                    .is_some_and(|t| now.saturating_duration_since(r.last_report) > t);
                ReporterStatus {
                    name: name.clone(),
                    live: r.live,
                    ready: r.ready,
                    timed_out,
                    detail: r.detail.clone(),
                }
            })
            .collect();
        HealthSummary {
            live: reporters.iter().all(|r| r.live && !r.timed_out),
            ready: !reporters.is_empty() && reporters.iter().all(|r| r.ready && !r.timed_out),
            reporters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_and_times_out() {
        let registry = HealthRegistry::new();
        let t0 = Instant::now();
        registry.register("datastore", Some(Duration::from_secs(30)), t0);
        registry.register("dataplane", Some(Duration::from_secs(90)), t0);
        let s = registry.summary(t0);
        assert!(s.live);
        assert!(!s.ready, "nothing reported ready yet");

        registry.report("datastore", true, true, "in sync", t0);
        registry.report("dataplane", true, true, "applied", t0);
        assert!(registry.summary(t0 + Duration::from_secs(5)).ready);

        // The datastore loop stops reporting: after its 30 s timeout it is neither live nor ready.
        registry.report(
            "dataplane",
            true,
            true,
            "applied",
            t0 + Duration::from_secs(40),
        );
        let late = registry.summary(t0 + Duration::from_secs(41));
        assert!(!late.live);
        assert!(!late.ready);
        assert!(late.table().contains("no report within timeout"));
    }

    #[test]
    fn empty_registry_is_live_but_not_ready() {
        let s = HealthRegistry::new().summary(Instant::now());
        assert!(s.live);
        assert!(!s.ready);
    }
}
