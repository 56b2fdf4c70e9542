//! The named policy counters as Prometheus counters: each nft counter's value is remembered
//! (with its handle) and only the growth since the last read is added to its series, so the
//! metrics keep counting across counters recreated by policy edits. A counter with a new handle,
//! or lower than last time, is a fresh one: its whole value is new. Series whose counters are
//! all gone (policy, profile or endpoint removed) are removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use starling_policy::program::{Direction, Family, PolicyId};
use starling_policy::render::names::{action_name, Owner};
use starling_policy::render::{CounterUse, CounterValue, Renderer};

use super::metrics::PolicyNftMetrics;

/// One exported series: rule labels (tier, policy, rule, direction, action) or denied labels
/// (endpoint, direction).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Series {
    Rule([String; 5]),
    Denied([String; 2]),
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

impl Series {
    /// The series a counter feeds; a profile's rules have tier `""`.
    pub fn of(what: &CounterUse, tiers: &BTreeMap<PolicyId, String>) -> Series {
        match what {
            CounterUse::Rule {
                owner,
                direction,
                index,
                action,
            } => {
                let (tier, policy) = match owner {
                    Owner::Policy(id) => {
                        (tiers.get(id).cloned().unwrap_or_default(), id.to_string())
                    }
                    Owner::Profile(name) => (String::new(), name.clone()),
                };
                Series::Rule([
                    tier,
                    policy,
                    index.to_string(),
                    direction_label(*direction).to_string(),
                    action_name(*action).to_string(),
                ])
            }
            CounterUse::Denied {
                endpoint,
                direction,
            } => Series::Denied([endpoint.clone(), direction_label(*direction).to_string()]),
        }
    }

    fn labels(&self) -> Vec<&str> {
        match self {
            Series::Rule(labels) => labels.iter().map(String::as_str).collect(),
            Series::Denied(labels) => labels.iter().map(String::as_str).collect(),
        }
    }
}

/// What one [`refresh_counters`](super::PolicyDataplane::refresh_counters) read and added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterReport {
    /// Named counters read from both tables.
    pub counters: usize,
    /// Counters the last rendering does not name (left out: a table not yet resynced).
    pub unknown: usize,
    /// Packets and bytes added to the metrics by this read.
    pub packets: u64,
    pub bytes: u64,
    /// Series exported now, and series removed because their counters are gone.
    pub series: usize,
    pub removed_series: usize,
    /// Growth per series in this read (zero for series that did not grow).
    pub growth: BTreeMap<Series, (u64, u64)>,
    /// Reading both tables and updating the metrics.
    pub duration: std::time::Duration,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    handle: u64,
    packets: u64,
    bytes: u64,
}

/// Last values seen, by family and counter name, and the series exported.
#[derive(Default)]
pub(super) struct CounterBook {
    last: HashMap<(Family, String), Last>,
    series: BTreeSet<Series>,
}

fn growth(last: Option<&Last>, value: &CounterValue) -> (u64, u64) {
    match last {
        Some(last)
            if last.handle == value.handle
                && value.packets >= last.packets
                && value.bytes >= last.bytes =>
        {
            (value.packets - last.packets, value.bytes - last.bytes)
        }
        _ => (value.packets, value.bytes),
    }
}

impl CounterBook {
    /// Accounts the counters read from both tables (V4 then V6), named through `renderer`'s
    /// desired tables, and moves the metrics by their growth.
    pub fn account(
        &mut self,
        renderer: &Renderer,
        values: [Vec<CounterValue>; 2],
        metrics: Option<&PolicyNftMetrics>,
    ) -> CounterReport {
        let tiers = renderer.policy_tiers();
        let mut report = CounterReport::default();
        let mut last = HashMap::with_capacity(self.last.len());
        for (family, values) in [Family::V4, Family::V6].into_iter().zip(values) {
            let uses = &renderer.table(family).counter_uses;
            for value in values {
                report.counters += 1;
                let Some(what) = uses.get(&value.name) else {
                    report.unknown += 1;
                    continue;
                };
                let key = (family, value.name.clone());
                let (packets, bytes) = growth(self.last.get(&key), &value);
                let entry = report.growth.entry(Series::of(what, &tiers)).or_default();
                entry.0 += packets;
                entry.1 += bytes;
                report.packets += packets;
                report.bytes += bytes;
                last.insert(
                    key,
                    Last {
                        handle: value.handle,
                        packets: value.packets,
                        bytes: value.bytes,
                    },
                );
            }
        }
        self.last = last;
        let series: BTreeSet<Series> = report.growth.keys().cloned().collect();
        if let Some(metrics) = metrics {
            for (series, (packets, bytes)) in &report.growth {
                // An idle counter of an exported series changes nothing: skip the lookups.
                if (*packets, *bytes) == (0, 0) && self.series.contains(series) {
                    continue;
                }
                let labels = series.labels();
                let (packet_family, byte_family) = families(metrics, series);
                packet_family.with_label_values(&labels).inc_by(*packets);
                byte_family.with_label_values(&labels).inc_by(*bytes);
            }
            for gone in self.series.difference(&series) {
                let labels = gone.labels();
                let (packet_family, byte_family) = families(metrics, gone);
                let _ = packet_family.remove_label_values(&labels);
                let _ = byte_family.remove_label_values(&labels);
            }
        }
        report.removed_series = self.series.difference(&series).count();
        report.series = series.len();
        self.series = series;
        report
    }
}

fn families<'a>(
    metrics: &'a PolicyNftMetrics,
    series: &Series,
) -> (&'a prometheus::IntCounterVec, &'a prometheus::IntCounterVec) {
    match series {
        Series::Rule(_) => (&metrics.rule_packets_total, &metrics.rule_bytes_total),
        Series::Denied(_) => (&metrics.denied_packets_total, &metrics.denied_bytes_total),
    }
}
