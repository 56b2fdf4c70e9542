//! An unusable BGPFilter never leaves a peer unfiltered, and says why: an invalid filter stays
//! in the cluster state as a stand-in (both datastores), so a peer naming it reports "invalid:
//! <field and why>" rather than "not found"; the speaker logs each episode once (session,
//! BGPPeer, filter, reason) and shows it as `starling_bgp_filter_errors` until it is fixed.
//! No root needed (the session is passive on loopback and never connects).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use starling::bgp::speaker::SpeakerHandle;
use starling::metrics::Metrics;
use starling::resources::BGPFilter;
use starling::syncer::convert::{self, Conversion};
use starling_bgp::config::SpeakerConfig;
use starling_bgp::filter::{FilterChain, FilterSet, ProblemReason};
use starling_bgp::peering::{PeerKind, SessionSpec};
use starling_calc::state::{ClusterState, Kind, Resource, Update};
use starling_model::{AsNumber, NextHopMode};

const BAD_SPEC: &str =
    r#"{"importV4": [{"action": "Accept", "matchOperator": "In", "cidr": "10.0.0/8"}]}"#;
const BAD_REASON: &str = "BGPFilter \"bad\": spec.importV4[0].cidr \"10.0.0/8\" is not a CIDR";

fn state_with(conversion: Conversion) -> ClusterState {
    let mut state = ClusterState::new();
    let Conversion::InvalidKept(key, reason, stand_in) = conversion else {
        panic!("an invalid BGPFilter must be kept as a stand-in: {conversion:?}");
    };
    assert_eq!(reason, BAD_REASON);
    state.apply(Update::Replace {
        kind: Kind::BgpFilter,
        objects: BTreeMap::from([(key, *stand_in)]),
    });
    state
}

#[test]
fn invalid_filter_is_kept_with_its_reason_on_both_datastores() {
    let spec = serde_json::from_str(BAD_SPEC).unwrap();
    let kube = convert::from_crd::<BGPFilter>("bad".into(), &BGPFilter::new("bad", spec));
    let etcd_object = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPFilter",
        "metadata": {"name": "bad"},
        "spec": serde_json::from_str::<serde_json::Value>(BAD_SPEC).unwrap(),
    });
    let etcd = convert::from_etcd::<BGPFilter>(
        "/calico/resources/v3/projectcalico.org/bgpfilters/bad",
        &serde_json::to_vec(&etcd_object).unwrap(),
    )
    .unwrap();
    for (datastore, conversion) in [("kube", kube), ("etcd", etcd)] {
        let state = state_with(conversion);
        let filters = state.bgp_filters();
        assert_eq!(
            filters.get("bad"),
            Some(&Err(BAD_REASON.to_string())),
            "{datastore}"
        );
        let chain = FilterChain::resolve("tor", &["bad".to_string()], &filters);
        let problem = chain.problem().expect("unusable");
        assert_eq!(
            problem.reason,
            ProblemReason::Invalid(BAD_REASON.into()),
            "{datastore}"
        );
        let missing = FilterChain::resolve("tor", &["gone".to_string()], &filters);
        assert_eq!(missing.problem().unwrap().reason, ProblemReason::NotFound);
    }
    // A valid filter replaces the stand-in.
    let mut state = ClusterState::new();
    let good = serde_json::from_value(json!({"importV4": [{"action": "Reject"}]})).unwrap();
    let Conversion::Valid(key, resource) =
        convert::from_crd::<BGPFilter>("bad".into(), &BGPFilter::new("bad", good))
    else {
        panic!("valid filter refused");
    };
    assert!(matches!(*resource, Resource::BgpFilter(_)));
    state.apply(Update::Put { key, resource });
    assert!(state.bgp_filters()["bad"].is_ok());
}

/// Log lines written while the guard of [`capture_logs`] lives.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(containing))
            .map(str::to_string)
            .collect()
    }
}

fn speaker_config(filters: FilterChain) -> SpeakerConfig {
    let spec = SessionSpec {
        name: "Global_127_0_0_1".into(),
        kind: PeerKind::Global,
        peer_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        peer_port: 1,
        peer_as: AsNumber(64512),
        local_as: AsNumber(64512),
        source_address: None,
        passive: true,
        password: None,
        keepalive_time: None,
        graceful_restart_time: None,
        ttl_security: None,
        next_hop_mode: NextHopMode::Auto,
        route_reflector_client_cluster_id: None,
        peer_is_calico_node: false,
        num_allowed_local_as_numbers: None,
        import_limit: None,
        filters,
        bfd: None,
    };
    SpeakerConfig {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        local_as: AsNumber(64512),
        listen_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        // Port 0: the listener takes a free port (nothing connects in this test).
        listen_port: 0,
        sessions: BTreeMap::from([(spec.name.clone(), spec)]),
        passwords: BTreeMap::new(),
        originated: Vec::new(),
        originated_interfaces: BTreeMap::new(),
        policy: Default::default(),
        graceful_restart_time: Duration::from_secs(120),
    }
}

fn error_series(metrics: &Metrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|line| line.starts_with("starling_bgp_filter_errors{"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn unusable_filter_is_logged_once_and_shown_until_fixed() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The actor runs on this (current-thread) runtime, so a thread-local subscriber sees it.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut known = FilterSet::new();
    known.insert("bad".into(), Err(BAD_REASON.into()));
    let missing = FilterChain::resolve("tor", &["gone".to_string()], &known);
    let invalid = FilterChain::resolve("tor", &["bad".to_string()], &known);

    let metrics = Metrics::new();
    let speaker = SpeakerHandle::spawn(speaker_config(missing.clone()), metrics.clone());
    speaker.status().await;
    assert_eq!(
        error_series(&metrics),
        [
            r#"starling_bgp_filter_errors{bgppeer="tor",filter="gone",peer="Global_127_0_0_1",reason="not_found"} 1"#
        ]
    );
    // The same configuration again (a recompute) logs nothing more.
    speaker.update(speaker_config(missing));
    speaker.status().await;
    let logged = logs.lines("spec.filters names BGPFilter");
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(
        logged[0].contains("ERROR")
            && logged[0].contains(
                "BGPPeer \"tor\": spec.filters names BGPFilter \"gone\", which is not found"
            )
            && logged[0].contains("session=Global_127_0_0_1"),
        "{}",
        logged[0]
    );
    // Now the filter exists but is invalid: a new episode, with the field and why.
    speaker.update(speaker_config(invalid));
    speaker.status().await;
    assert_eq!(
        error_series(&metrics),
        [
            r#"starling_bgp_filter_errors{bgppeer="tor",filter="bad",peer="Global_127_0_0_1",reason="invalid"} 1"#
        ]
    );
    let logged = logs.lines("spec.filters names BGPFilter");
    assert_eq!(logged.len(), 2, "{logged:#?}");
    assert!(
        logged[1].contains(&format!(
            "BGPFilter \"bad\", which is invalid: {BAD_REASON};"
        )),
        "{}",
        logged[1]
    );
    // Fixed: the series goes, and the recovery is logged.
    speaker.update(speaker_config(FilterChain::None));
    speaker.status().await;
    assert!(error_series(&metrics).is_empty());
    assert_eq!(logs.lines("BGP filters usable again").len(), 1);
    speaker.shutdown(false).await;
}
