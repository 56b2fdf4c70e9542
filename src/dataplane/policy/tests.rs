//! The applier's bookkeeping with a fake nft: first apply resyncs, nothing changed runs no nft,
//! a rejected transaction is reported with its failing line and the next apply resyncs;
//! metrics count all of it. Counter accounting: growth added, recreated counters added whole,
//! series of removed policies removed.

use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::Registry;
use starling_policy::render::synthetic;

use super::*;

#[derive(Default)]
struct FakeState {
    scripts: Vec<String>,
    lists: usize,
    fail_next: Option<String>,
    /// `nft -j list counters` answers per family (V4, V6); `None`: no table.
    counters: [Option<String>; 2],
    fail_counters: bool,
}

struct FakeNft(Arc<Mutex<FakeState>>);

impl Nft for FakeNft {
    fn run(&mut self, script: &str) -> Result<(), NftError> {
        let mut state = self.0.lock().unwrap();
        state.scripts.push(script.to_string());
        match state.fail_next.take() {
            Some(stderr) => Err(nft::rejected(script, &stderr)),
            None => Ok(()),
        }
    }

    fn list(&mut self, _family: Family) -> Result<Option<String>, NftError> {
        self.0.lock().unwrap().lists += 1;
        Ok(None)
    }

    fn counters(&mut self, family: Family) -> Result<Vec<CounterValue>, NftError> {
        let state = self.0.lock().unwrap();
        if state.fail_counters {
            return Err(NftError::Counters {
                family: nft_family(family),
                message: "Operation not permitted".into(),
            });
        }
        match &state.counters[usize::from(family == Family::V6)] {
            Some(json) => Ok(installed::parse_counters(json, family).unwrap()),
            None => Ok(vec![]),
        }
    }
}

fn dataplane() -> (PolicyDataplane, Arc<Mutex<FakeState>>, PolicyNftMetrics) {
    let state = Arc::new(Mutex::new(FakeState::default()));
    let metrics = PolicyNftMetrics::new(&Registry::new());
    let dataplane = PolicyDataplane::with_nft(
        RenderConfig::default(),
        Box::new(FakeNft(state.clone())),
        Some(metrics.clone()),
    )
    .unwrap();
    (dataplane, state, metrics)
}

#[test]
fn first_apply_resyncs_then_only_changes_are_written() {
    let (mut dataplane, state, metrics) = dataplane();
    let mut program = synthetic::large_program(4, 4);
    let first = dataplane.apply(&program, &Changes::default()).unwrap();
    assert_eq!(first.kind, ApplyKind::Resync);
    assert!(first.script_bytes > 0 && first.objects > 10, "{first:?}");
    assert_eq!(state.lock().unwrap().lists, 2, "both tables read");

    let idle = dataplane.apply(&program, &Changes::default()).unwrap();
    assert_eq!(idle.kind, ApplyKind::Incremental);
    assert_eq!((idle.script_bytes, idle.objects), (0, 0));
    assert_eq!(
        state.lock().unwrap().scripts.len(),
        1,
        "no nft run for nothing"
    );

    let changes = synthetic::add_endpoint(&mut program, 4, 4, 4);
    let report = dataplane.apply(&program, &changes).unwrap();
    assert_eq!(report.kind, ApplyKind::Incremental);
    assert_eq!(report.touched.chains_created, 4);
    let scripts = state.lock().unwrap().scripts.clone();
    assert_eq!(scripts.len(), 2);
    assert_eq!(report.script_bytes, scripts[1].len());

    let label = |kind: &str| metrics.transactions_total.with_label_values(&[kind]).get();
    assert_eq!((label("resync"), label("incremental")), (1, 1));
    assert_eq!(metrics.transaction_seconds.get_sample_count(), 2);
    let chains = metrics.chains.with_label_values(&["ip"]).get();
    assert_eq!(
        chains as usize,
        dataplane.renderer().counts(Family::V4).chains
    );
    assert!(metrics.rules.with_label_values(&["ip6"]).get() > chains);
}

#[test]
fn a_rejected_transaction_names_its_line_and_the_next_apply_resyncs() {
    let (mut dataplane, state, metrics) = dataplane();
    let mut program = synthetic::large_program(4, 4);
    dataplane.apply(&program, &Changes::default()).unwrap();
    let changes = synthetic::add_endpoint(&mut program, 4, 4, 4);
    state.lock().unwrap().fail_next =
        Some("/dev/stdin:2:1-5: Error: Could not process rule: No such file or directory\n".into());
    let error = dataplane.apply(&program, &changes).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("Could not process rule"), "{text}");
    let attempted = state.lock().unwrap().scripts.last().cloned().unwrap();
    let second = attempted.lines().nth(1).unwrap();
    assert!(text.contains(&format!("(at line 2: {second})")), "{text}");
    assert_eq!(
        metrics
            .failures_total
            .with_label_values(&["incremental"])
            .get(),
        1
    );
    let lists_before = state.lock().unwrap().lists;
    let report = dataplane.apply(&program, &Changes::default()).unwrap();
    assert_eq!(report.kind, ApplyKind::Resync);
    assert_eq!(state.lock().unwrap().lists, lists_before + 2);
    // The empty fake kernel gets the whole program, new endpoint included.
    let last = state.lock().unwrap().scripts.last().cloned().unwrap();
    assert!(
        last.contains("\"cali00000000004\" : goto tw-cali00000000004"),
        "{last}"
    );
}

/// A `nft -j list counters` answer for `family` holding `(name, handle, packets, bytes)`.
fn listing(family: &str, counters: &[(&str, u64, u64, u64)]) -> Option<String> {
    let objects: Vec<String> = counters
        .iter()
        .map(|(name, handle, packets, bytes)| {
            format!(
                r#"{{"counter": {{"family": "{family}", "name": "{name}", "table": "starling", "handle": {handle}, "packets": {packets}, "bytes": {bytes}}}}}"#
            )
        })
        .collect();
    Some(format!(
        r#"{{"nftables": [{{"metainfo": {{"json_schema_version": 1}}}}, {}]}}"#,
        objects.join(", ")
    ))
}

#[test]
fn counters_become_metrics_by_growth_across_recreation_and_removal() {
    let (mut dataplane, state, metrics) = dataplane();
    let program = synthetic::large_program(4, 4);
    dataplane.apply(&program, &Changes::default()).unwrap();
    // Synthetic: policy-0 is in ns0, applied to endpoint 0 (interface cali00000000000).
    let web = "pi-knp/ns0/policy-0.r0.allow";
    let profile = "pro-kns.ns0.r0.allow";
    let denied = "tw-cali00000000000.drop";
    for name in [web, profile, denied] {
        assert!(
            dataplane
                .renderer()
                .table(Family::V4)
                .counter_uses
                .contains_key(name),
            "{name}"
        );
    }
    let rule = |labels: [&str; 5]| metrics.rule_packets_total.with_label_values(&labels).get();
    let web_labels = ["default", "knp/ns0/policy-0", "0", "ingress", "allow"];
    let profile_labels = ["", "kns.ns0", "0", "egress", "allow"];
    let denied_of = |direction: &str| {
        metrics
            .denied_packets_total
            .with_label_values(&["ns0/pod-0", direction])
            .get()
    };

    state.lock().unwrap().counters = [
        listing(
            "ip",
            &[
                (web, 1, 5, 500),
                (profile, 2, 7, 700),
                (denied, 3, 2, 120),
                ("alien", 9, 1, 1),
            ],
        ),
        listing("ip6", &[(web, 1, 1, 100)]),
    ];
    let report = dataplane.refresh_counters().unwrap();
    assert_eq!((report.counters, report.unknown), (5, 1), "{report:?}");
    // The first read counts everything nft counted; v4 and v6 add up.
    assert_eq!(rule(web_labels), 6);
    assert_eq!(
        metrics
            .rule_bytes_total
            .with_label_values(&web_labels)
            .get(),
        600
    );
    assert_eq!(rule(profile_labels), 7);
    assert_eq!(denied_of("ingress"), 2);
    assert_eq!(
        metrics
            .denied_bytes_total
            .with_label_values(&["ns0/pod-0", "ingress"])
            .get(),
        120
    );
    assert_eq!(report.packets, 15);

    // Growth only; the web counter was recreated in v4 (new handle, lower value: all new),
    // the profile counter was reset in place (lower value: all new).
    state.lock().unwrap().counters = [
        listing(
            "ip",
            &[
                (web, 11, 3, 300),
                (profile, 2, 4, 400),
                (denied, 3, 10, 600),
            ],
        ),
        listing("ip6", &[(web, 1, 4, 400)]),
    ];
    let report = dataplane.refresh_counters().unwrap();
    assert_eq!(rule(web_labels), 6 + 3 + 3);
    assert_eq!(rule(profile_labels), 7 + 4);
    assert_eq!(denied_of("ingress"), 10);
    assert_eq!(
        report.growth[&Series::Denied(["ns0/pod-0".into(), "ingress".into()])],
        (8, 480)
    );
    // A recreated counter that already grew past the old value is still new (its handle).
    state.lock().unwrap().counters = [
        listing(
            "ip",
            &[
                (web, 12, 50, 5000),
                (profile, 2, 4, 400),
                (denied, 3, 10, 600),
            ],
        ),
        listing("ip6", &[(web, 1, 4, 400)]),
    ];
    dataplane.refresh_counters().unwrap();
    assert_eq!(rule(web_labels), 12 + 50);
    assert_eq!(rule(profile_labels), 11, "no growth, no change");

    // The web counters are gone (policy removed): their series go, the others stay.
    state.lock().unwrap().counters = [
        listing("ip", &[(profile, 2, 4, 400), (denied, 3, 10, 600)]),
        None,
    ];
    let report = dataplane.refresh_counters().unwrap();
    assert_eq!(report.removed_series, 1, "{report:?}");
    let exported = metrics.rule_packets_total.collect()[0].get_metric().len();
    assert_eq!(exported, 1, "only the profile's series is left");
    assert_eq!(rule(profile_labels), 11);
    assert_eq!(metrics.counters_read_seconds.get_sample_count(), 4);

    // A failed read changes nothing and is counted.
    state.lock().unwrap().fail_counters = true;
    let error = dataplane.refresh_counters().unwrap_err().to_string();
    assert!(error.contains("counters of table ip starling"), "{error}");
    assert_eq!(
        metrics
            .failures_total
            .with_label_values(&["counters"])
            .get(),
        1
    );
    assert_eq!(denied_of("ingress"), 10);
}
