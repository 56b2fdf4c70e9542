//! The policy dataplane's metric families (registered once, in `crate::metrics::Metrics`):
//!
//! * `starling_policy_nft_transactions_total{kind}` — nft transactions committed (`kind` is
//!   `incremental` or `resync`); a resync that found nothing to write runs none.
//! * `starling_policy_nft_failures_total{kind}` — transactions nft rejected, and failed reads
//!   of the installed tables; `kind="counters"` for failed counter reads.
//! * `starling_policy_nft_transaction_seconds` — time to render and commit one change.
//! * `starling_policy_nft_objects_touched_total{kind}` — sets, elements and chains written.
//! * `starling_policy_nft_chains{family}`, `..._rules{family}`, `..._sets{family}` — objects in
//!   the desired tables after the last commit.
//!
//! From the named counters, updated by `PolicyDataplane::refresh_counters` (see `counters`):
//!
//! * `starling_policy_rule_packets_total{tier,policy,rule,direction,action}` and
//!   `starling_policy_rule_bytes_total{..}` — what one rule of a policy or profile matched (both
//!   families summed). `policy` and `rule` as `starling policy explain` prints them (`knp/ns/x`,
//!   the rule's index in its direction); a profile's rules have `tier=""` (no Calico tier can be
//!   named so) and the profile's name as `policy`. `action` is allow, deny, pass or log.
//! * `starling_policy_denied_packets_total{endpoint,direction}` and `..._denied_bytes_total` —
//!   what an endpoint's own chain dropped (tier default Deny, no profile allowed); `endpoint` is
//!   `<ns>/<name>`. Drops by a Deny rule count on that rule instead.
//! * `starling_policy_counters_read_seconds` — time to read and account all counters.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Labels of the per-rule counter families.
pub const RULE_LABELS: [&str; 5] = ["tier", "policy", "rule", "direction", "action"];
/// Labels of the per-endpoint denied families.
pub const DENIED_LABELS: [&str; 2] = ["endpoint", "direction"];

#[derive(Clone)]
pub struct PolicyNftMetrics {
    pub transactions_total: IntCounterVec,
    pub failures_total: IntCounterVec,
    pub transaction_seconds: Histogram,
    pub objects_touched_total: IntCounterVec,
    pub chains: IntGaugeVec,
    pub rules: IntGaugeVec,
    pub sets: IntGaugeVec,
    pub rule_packets_total: IntCounterVec,
    pub rule_bytes_total: IntCounterVec,
    pub denied_packets_total: IntCounterVec,
    pub denied_bytes_total: IntCounterVec,
    pub counters_read_seconds: Histogram,
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
        let labelled = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels)
                    .expect("static metric definition"),
            )
        };
        let buckets = prometheus::exponential_buckets(0.0001, 4.0, 10).expect("static buckets");
        let histogram = |name: &str, help: &str| {
            register(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.clone()))
                    .expect("static metric definition"),
            )
        };
        PolicyNftMetrics {
            transactions_total: counter(
                "starling_policy_nft_transactions_total",
                "Policy nft transactions committed, by kind (incremental, resync)",
            ),
            failures_total: counter(
                "starling_policy_nft_failures_total",
                "Policy nft transactions rejected or table reads failed, by kind",
            ),
            transaction_seconds: histogram(
                "starling_policy_nft_transaction_seconds",
                "Time to render and commit one policy nft transaction",
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
            rule_packets_total: labelled(
                "starling_policy_rule_packets_total",
                "Packets matched by a policy or profile rule (tier \"\" for profiles)",
                &RULE_LABELS,
            ),
            rule_bytes_total: labelled(
                "starling_policy_rule_bytes_total",
                "Bytes matched by a policy or profile rule (tier \"\" for profiles)",
                &RULE_LABELS,
            ),
            denied_packets_total: labelled(
                "starling_policy_denied_packets_total",
                "Packets an endpoint's chain dropped: tier default deny or no profile allowed",
                &DENIED_LABELS,
            ),
            denied_bytes_total: labelled(
                "starling_policy_denied_bytes_total",
                "Bytes an endpoint's chain dropped: tier default deny or no profile allowed",
                &DENIED_LABELS,
            ),
            counters_read_seconds: histogram(
                "starling_policy_counters_read_seconds",
                "Time to read Starling's policy counters from nft and update their metrics",
            ),
        }
    }
}
