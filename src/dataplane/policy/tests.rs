//! The applier's bookkeeping with a fake nft: first apply resyncs, nothing changed runs no nft,
//! a rejected transaction is reported with its failing line and the next apply resyncs;
//! metrics count all of it.

use std::sync::{Arc, Mutex};

use prometheus::Registry;
use starling_policy::render::synthetic;

use super::*;

#[derive(Default)]
struct FakeState {
    scripts: Vec<String>,
    lists: usize,
    fail_next: Option<String>,
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
