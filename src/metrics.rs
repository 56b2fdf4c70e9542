//! Prometheus metrics: one registry holding process metrics and every `starling_*` family.
//!
//! Families are created once here so names and labels stay consistent across modules; the
//! modules receive a clone of [`Metrics`] (all fields are cheap `Arc`-backed handles).

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric family Starling exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// 1 when the kind has delivered its initial list, else 0.
    pub datastore_in_sync: IntGaugeVec,
    pub datastore_updates_total: IntCounterVec,
    pub datastore_reconnects_total: IntCounterVec,
    pub resources_rejected_total: IntCounterVec,
    pub desired_compute_seconds: Histogram,
    pub dataplane_apply_seconds: Histogram,
    pub dataplane_apply_failures_total: IntCounter,
    pub dataplane_writes_total: IntCounterVec,
    pub routes: IntGaugeVec,
    pub bgp_sessions: IntGaugeVec,
    pub bgp_prefixes_received: IntGaugeVec,
    pub bgp_prefixes_accepted: IntGaugeVec,
    pub bgp_prefixes_advertised: IntGaugeVec,
    pub bgp_updates_received_total: IntCounterVec,
    pub bgp_updates_sent_total: IntCounterVec,
    pub bgp_notifications_total: IntCounterVec,
    pub bgp_import_limit_reached_total: IntCounterVec,
    /// 1 while a session's BGPFilters are unusable (the session rejects every route).
    pub bgp_filter_errors: IntGaugeVec,
    /// BFD session state by BGP session, as on the wire: 0 AdminDown, 1 Down, 2 Init, 3 Up.
    pub bfd_session_state: IntGaugeVec,
    pub bfd_transitions_total: IntCounterVec,
    pub bfd_packets_dropped_total: IntCounterVec,
    pub ipam_blocks: IntGaugeVec,
    pub ipam_addresses_in_use: IntGaugeVec,
    pub ipam_pool_size: GaugeVec,
    pub ipam_operation_seconds: HistogramVec,
    pub cni_requests_total: IntCounterVec,
    pub service_routes: IntGaugeVec,
    pub policy_nft: crate::dataplane::policy::PolicyNftMetrics,
    pub policy_engine: crate::policy_metrics::PolicyEngineMetrics,
    pub build_info: IntGauge,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    // Names are static and unique, so registration can only fail on a programming error caught by tests.
    if let Err(err) = registry.register(Box::new(collector.clone())) {
        tracing::error!(%err, "metric registration failed");
    }
    collector
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(err) = registry.register(Box::new(process)) {
                tracing::error!(%err, "process metrics registration failed");
            }
        }
        let r = &registry;
        let int_gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                r,
                IntGaugeVec::new(opts(name, help), labels).expect("static metric definition"),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                r,
                IntCounterVec::new(opts(name, help), labels).expect("static metric definition"),
            )
        };
        let histogram = |name: &str, help: &str| {
            let buckets = prometheus::exponential_buckets(0.0001, 4.0, 10).expect("static buckets");
            register(
                r,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .expect("static metric definition"),
            )
        };
        let metrics = Metrics {
            datastore_in_sync: int_gauge_vec(
                "starling_datastore_in_sync",
                "1 when the watched kind has delivered its initial list",
                &["kind"],
            ),
            datastore_updates_total: counter_vec(
                "starling_datastore_updates_total",
                "Datastore updates received, by kind",
                &["kind"],
            ),
            datastore_reconnects_total: counter_vec(
                "starling_datastore_reconnects_total",
                "Watch connections re-established, by kind",
                &["kind"],
            ),
            resources_rejected_total: counter_vec(
                "starling_resources_rejected_total",
                "Resources ignored because they failed validation, by kind",
                &["kind"],
            ),
            desired_compute_seconds: histogram(
                "starling_desired_compute_seconds",
                "Time to compute the desired dataplane and BGP state",
            ),
            dataplane_apply_seconds: histogram(
                "starling_dataplane_apply_seconds",
                "Time for one dataplane reconcile pass",
            ),
            dataplane_apply_failures_total: register(
                r,
                IntCounter::with_opts(opts(
                    "starling_dataplane_apply_failures_total",
                    "Kernel writes that failed and were left pending for retry",
                ))
                .expect("static metric definition"),
            ),
            dataplane_writes_total: counter_vec(
                "starling_dataplane_writes_total",
                "Kernel writes made by the reconciler, by object kind",
                &["object"],
            ),
            routes: int_gauge_vec(
                "starling_routes",
                "Routes in the desired dataplane, by class",
                &["class"],
            ),
            bgp_sessions: int_gauge_vec(
                "starling_bgp_sessions",
                "BGP sessions by FSM state",
                &["state"],
            ),
            bgp_prefixes_received: int_gauge_vec(
                "starling_bgp_prefixes_received",
                "Prefixes in the Adj-RIB-In of a peer",
                &["peer"],
            ),
            bgp_prefixes_accepted: int_gauge_vec(
                "starling_bgp_prefixes_accepted",
                "Prefixes of a peer accepted by import policy",
                &["peer"],
            ),
            bgp_prefixes_advertised: int_gauge_vec(
                "starling_bgp_prefixes_advertised",
                "Prefixes in the Adj-RIB-Out of a peer",
                &["peer"],
            ),
            bgp_updates_received_total: counter_vec(
                "starling_bgp_updates_received_total",
                "UPDATE messages received, by peer",
                &["peer"],
            ),
            bgp_updates_sent_total: counter_vec(
                "starling_bgp_updates_sent_total",
                "UPDATE messages sent, by peer",
                &["peer"],
            ),
            bgp_notifications_total: counter_vec(
                "starling_bgp_notifications_total",
                "NOTIFICATION messages, by peer and direction",
                &["peer", "direction"],
            ),
            bgp_import_limit_reached_total: counter_vec(
                "starling_bgp_import_limit_reached_total",
                "Times a peer passed its import limit (starling.io/import-limit), by peer",
                &["peer"],
            ),
            bgp_filter_errors: int_gauge_vec(
                "starling_bgp_filter_errors",
                "1 while a peer names a BGPFilter that is missing (reason not_found) or invalid: every route to and from the peer is rejected; by peer, BGPPeer, filter and reason",
                &["peer", "bgppeer", "filter", "reason"],
            ),
            bfd_session_state: int_gauge_vec(
                "starling_bfd_session_state",
                "BFD session state of a BGP peer (RFC 5880 values: 0 AdminDown, 1 Down, 2 Init, 3 Up)",
                &["peer"],
            ),
            bfd_transitions_total: counter_vec(
                "starling_bfd_transitions_total",
                "BFD state changes, by peer and the state entered (down after up ends the BGP session)",
                &["peer", "state"],
            ),
            bfd_packets_dropped_total: counter_vec(
                "starling_bfd_packets_dropped_total",
                "Received BFD packets discarded, by reason (ttl, malformed, no_session)",
                &["reason"],
            ),
            ipam_blocks: int_gauge_vec(
                "starling_ipam_blocks",
                "IPAM blocks, by pool and affine node",
                &["pool", "node"],
            ),
            ipam_addresses_in_use: int_gauge_vec(
                "starling_ipam_addresses_in_use",
                "Allocated addresses, by pool",
                &["pool"],
            ),
            ipam_pool_size: register(
                r,
                GaugeVec::new(
                    opts("starling_ipam_pool_size", "Addresses in the pool CIDR"),
                    &["pool"],
                )
                .expect("static metric definition"),
            ),
            ipam_operation_seconds: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "starling_ipam_operation_seconds",
                        "Latency of IPAM assign/release operations",
                    ),
                    &["operation"],
                )
                .expect("static metric definition"),
            ),
            cni_requests_total: counter_vec(
                "starling_cni_requests_total",
                "CNI requests served by the daemon, by command and result",
                &["command", "result"],
            ),
            service_routes: int_gauge_vec(
                "starling_service_routes_advertised",
                "Service routes this node originates over BGP: the configured ranges and per-Service addresses",
                &["source"],
            ),
            policy_nft: crate::dataplane::policy::PolicyNftMetrics::new(r),
            policy_engine: crate::policy_metrics::PolicyEngineMetrics::new(r),
            build_info: register(
                r,
                IntGauge::with_opts(
                    opts("starling_build_info", "Always 1; labels carry the version")
                        .const_label("version", env!("CARGO_PKG_VERSION")),
                )
                .expect("static metric definition"),
            ),
            registry,
        };
        metrics.build_info.set(1);
        metrics
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(err) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%err, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_starling_families() {
        let metrics = Metrics::new();
        metrics
            .datastore_in_sync
            .with_label_values(&["IPPool"])
            .set(1);
        metrics.routes.with_label_values(&["LocalWorkload"]).set(3);
        let text = metrics.render();
        assert!(text.contains("starling_datastore_in_sync{kind=\"IPPool\"} 1"));
        assert!(text.contains("starling_routes{class=\"LocalWorkload\"} 3"));
        assert!(text.contains("starling_build_info"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
