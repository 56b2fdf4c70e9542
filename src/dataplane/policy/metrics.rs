//! The policy dataplane's metric families (registered once, in `crate::metrics::Metrics`):
//!
//! * `starling_policy_nft_transactions_total{kind}` — nft transactions committed (`kind` is
//!   `incremental` or `resync`); a resync that found nothing to write runs none.
//! * `starling_policy_nft_failures_total{kind}` — transactions nft rejected, and failed reads
//!   of the installed tables.
//! * `starling_policy_nft_transaction_seconds` — time to render and commit one change.
//! * `starling_policy_nft_objects_touched_total{kind}` — sets, elements and chains written.
//! * `starling_policy_nft_chains{family}`, `..._rules{family}`, `..._sets{family}` — objects in
//!   the desired tables after the last commit.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct PolicyNftMetrics {
    pub transactions_total: IntCounterVec,
    pub failures_total: IntCounterVec,
    pub transaction_seconds: Histogram,
    pub objects_touched_total: IntCounterVec,
    pub chains: IntGaugeVec,
    pub rules: IntGaugeVec,
    pub sets: IntGaugeVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // Static, unique names: registration can only fail on a programming error caught by tests.
    if let Err(err) = registry.register(Box::new(c.clone())) {
        tracing::error!(%err, "policy metric registration failed");
    }
    c
}

impl PolicyNftMetrics {
    pub fn new(registry: &Registry) -> PolicyNftMetrics {
        let counter = |name: &str, help: &str| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), &["kind"])
                    .expect("static metric definition"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(
                registry,
                IntGaugeVec::new(Opts::new(name, help), &["family"])
                    .expect("static metric definition"),
            )
        };
        let buckets = prometheus::exponential_buckets(0.0001, 4.0, 10).expect("static buckets");
        PolicyNftMetrics {
            transactions_total: counter(
                "starling_policy_nft_transactions_total",
                "Policy nft transactions committed, by kind (incremental, resync)",
            ),
            failures_total: counter(
                "starling_policy_nft_failures_total",
                "Policy nft transactions rejected or table reads failed, by kind",
            ),
            transaction_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "starling_policy_nft_transaction_seconds",
                        "Time to render and commit one policy nft transaction",
                    )
                    .buckets(buckets),
                )
                .expect("static metric definition"),
            ),
            objects_touched_total: counter(
                "starling_policy_nft_objects_touched_total",
                "Sets, set and map elements and chains written by policy transactions, by kind",
            ),
            chains: gauge(
                "starling_policy_nft_chains",
                "Chains in Starling's policy table, by family",
            ),
            rules: gauge(
                "starling_policy_nft_rules",
                "Rules in Starling's policy table, by family",
            ),
            sets: gauge(
                "starling_policy_nft_sets",
                "Selector and named-port sets in Starling's policy table, by family",
            ),
        }
    }
}
