//! The policy engine's metric families (registered once, in `crate::metrics::Metrics`; kept
//! apart from `crate::policy` so that `metrics` depends on nothing that depends on it):
//!
//! * `starling_policy_compile_seconds` — time to apply one batch of datastore updates to the
//!   incremental compiler (decode, validate, compile).
//! * `starling_policy_rejected_total{kind}` — invalid policy inputs seen (each version once).
//! * `starling_policy_endpoints{scope}` — endpoints known (`all`) and on this node (`local`).
//! * `starling_policy_active{kind}` — policies and profiles applying to local endpoints.
//! * `starling_policy_in_sync` — 1 once every policy input kind has been listed.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct PolicyEngineMetrics {
    pub compile_seconds: Histogram,
    pub rejected_total: IntCounterVec,
    pub endpoints: IntGaugeVec,
    pub active: IntGaugeVec,
    pub in_sync: IntGauge,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // Static, unique names: registration can only fail on a programming error caught by tests.
    if let Err(err) = registry.register(Box::new(c.clone())) {
        tracing::error!(%err, "policy metric registration failed");
    }
    c
}

impl PolicyEngineMetrics {
    pub fn new(registry: &Registry) -> PolicyEngineMetrics {
        let gauge_vec = |name: &str, help: &str, label: &str| {
            register(
                registry,
                IntGaugeVec::new(Opts::new(name, help), &[label])
                    .expect("static metric definition"),
            )
        };
        let buckets = prometheus::exponential_buckets(0.00005, 4.0, 10).expect("static buckets");
        PolicyEngineMetrics {
            compile_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "starling_policy_compile_seconds",
                        "Time to apply one batch of policy inputs to the incremental compiler",
                    )
                    .buckets(buckets),
                )
                .expect("static metric definition"),
            ),
            rejected_total: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "starling_policy_rejected_total",
                        "Invalid policy inputs (policies, tiers, profiles, endpoints), by kind",
                    ),
                    &["kind"],
                )
                .expect("static metric definition"),
            ),
            endpoints: gauge_vec(
                "starling_policy_endpoints",
                "Workload endpoints known to the policy compiler (all) and on this node (local)",
                "scope",
            ),
            active: gauge_vec(
                "starling_policy_active",
                "Policies and profiles applying to this node's endpoints, by kind",
                "kind",
            ),
            in_sync: register(
                registry,
                IntGauge::with_opts(Opts::new(
                    "starling_policy_in_sync",
                    "1 once every policy input kind has been listed from the datastore",
                ))
                .expect("static metric definition"),
            ),
        }
    }
}
