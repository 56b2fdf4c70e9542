//! BFD on the node-to-node mesh in a BGP lab: `starling/bfd-interval` on the default
//! BGPConfiguration brings BFD Up on every mesh session; when node3's cable is pulled (its
//! bridge port set down, its daemon left running) node1 and node2 drop its routes long before
//! the hold time (240 s) and show BFD Down for it; with the cable back, BFD and the routes
//! return; node1's metrics tell the same. How fast is the `bfd_failover` benchmark's number,
//! not asserted here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use starling::lab::{self, failover, resources, topology, Mode};

use super::requirements::require_root;
use super::{logs, poll, Lab};

/// The value of the metric line starting with `series` (name and labels) on node `node`'s
/// metrics endpoint (the lab daemons serve it on port 9091).
fn metric(lab: &Lab, node: usize, series: &str) -> Option<f64> {
    let text = super::metrics_scrape::metrics_text(&lab.names().node_ns(node), 9091)?;
    super::metrics_scrape::series_value(&text, series)
}

#[test]
fn mesh_bfd_withdraws_a_cut_nodes_routes() {
    if !require_root("mesh_bfd_withdraws_a_cut_nodes_routes") {
        return;
    }
    let lab = Lab::up("e2ebfd", Mode::Bgp, 3, 1);
    let names = lab.names();
    // 500 ms detection: also proves the multiplier annotation, and leaves a loaded CI machine
    // some slack before a false Down.
    lab::etcd::put_all(
        &names,
        &lab.state.etcd_endpoints,
        vec![resources::mesh_configuration(
            serde_json::json!({"starling/bfd-interval": "100ms", "starling/bfd-multiplier": "5"}),
            serde_json::json!({}),
        )],
    )
    .unwrap();
    let sockets: Vec<PathBuf> = (1..=3)
        .map(|node| lab::daemons::NodeFiles::new(&lab.options.state_dir(), node).control_socket())
        .collect();
    let all_up = || {
        sockets.iter().all(|socket| {
            failover::bfd_states(socket).is_ok_and(|states| {
                states.len() == 2 && states.iter().all(|(_, bfd)| bfd.as_deref() == Some("Up"))
            })
        })
    };
    let node3 = topology::node_address(3);
    let routes_to_node3 = || {
        [1, 2].iter().all(|node| {
            failover::routes_via(&names, *node, node3).is_ok_and(|routes| !routes.is_empty())
        })
    };
    assert!(
        poll(Duration::from_secs(30), || all_up() && routes_to_node3()),
        "BFD not Up on the mesh: {:?}\n{}",
        sockets
            .iter()
            .map(|socket| failover::bfd_states(socket).ok())
            .collect::<Vec<_>>(),
        logs(&lab.options, 3)
    );

    // RFC 5880 values: 3 Up, 1 Down.
    let session = format!("Mesh_{}", node3.to_string().replace('.', "_"));
    let state_series = format!("starling_bfd_session_state{{peer=\"{session}\"}}");
    assert_eq!(metric(&lab, 1, &state_series), Some(3.0));

    failover::cut_node(&names, 3).unwrap();
    let gone = failover::time_until_gone(
        &names,
        &[1, 2],
        node3,
        Instant::now(),
        Duration::from_millis(50),
        Duration::from_secs(10),
    );
    eprintln!("node3 cut: its routes left node1 and node2 after {gone:?}");
    assert!(
        gone.iter().all(Option::is_some),
        "routes via node3 stayed: node1 {:?}, node2 {:?}",
        failover::routes_via(&names, 1, node3),
        failover::routes_via(&names, 2, node3)
    );
    let seen_by_node1 = failover::bfd_states(&sockets[0]).unwrap();
    assert!(
        seen_by_node1
            .iter()
            .any(|(peer, bfd)| *peer == node3 && bfd.as_deref() == Some("Down")),
        "node1's BFD for node3: {seen_by_node1:?}"
    );
    assert_eq!(metric(&lab, 1, &state_series), Some(1.0));
    let downs = format!("starling_bfd_transitions_total{{peer=\"{session}\",state=\"Down\"}}");
    assert!(
        metric(&lab, 1, &downs).is_some_and(|count| count >= 1.0),
        "{downs}: {:?}",
        metric(&lab, 1, &downs)
    );

    failover::restore_node(&names, 3).unwrap();
    assert!(
        poll(Duration::from_secs(60), || all_up() && routes_to_node3()),
        "BFD and routes did not return: {:?}",
        sockets
            .iter()
            .map(|socket| failover::bfd_states(socket).ok())
            .collect::<Vec<_>>()
    );
    lab.assert_full_matrix(Duration::from_secs(30));
}
