//! Learned BGP routes reach the kernel as per-prefix deltas: exactly one write per changed
//! route, none for the rest of the table, none on a full resync of a correct kernel (the fake
//! kernel resolves devices like the real one), and a withdrawal is one delete.

#[path = "support/netns_test.rs"]
mod netns_test;

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use netns_test::*;
use starling::dataplane::driver::{self, DriverOptions, DriverStatus};
use starling::dataplane::fake::FakeKernel;
use starling::route_deltas;
use starling_bgp::kernel::LearnedRoute;
use starling_calc::desired::compute;
use tokio::sync::{mpsc, watch};

fn learned(index: u32, next_hop: &str) -> (IpNet, Option<LearnedRoute>) {
    let prefix: IpNet = format!("10.{}.{}.0/24", 100 + index / 256, index % 256)
        .parse()
        .unwrap();
    (
        prefix,
        Some(LearnedRoute {
            prefix,
            next_hop: next_hop.parse().unwrap(),
            via_ipip: false,
        }),
    )
}

async fn until(
    status: &mut watch::Receiver<DriverStatus>,
    what: &str,
    done: impl Fn(&DriverStatus) -> bool,
) -> DriverStatus {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let current = status.borrow_and_update().clone();
            if done(&current) {
                return current;
            }
            status.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", status.borrow()))
}

#[tokio::test]
async fn each_learned_route_change_is_one_write_and_a_resync_writes_nothing() {
    let mut kernel = FakeKernel::resolving();
    kernel.add_interface("eth0", 1500, &["192.168.50.1/24".parse().unwrap()]);
    let mut input = three_node_vxlan();
    input.datastore_in_sync = true;
    let (desired_sender, desired) = watch::channel(Arc::new(compute(&input)));
    let (kick_sender, kicks) = mpsc::channel(1);
    let (status_sender, mut status) = watch::channel(DriverStatus::default());
    let (deltas, receiver) = route_deltas::channel();
    let options = DriverOptions {
        manage_nat: false,
        sysctl_root: None,
        mtu_file: None,
        debounce: Duration::ZERO,
        ..DriverOptions::default()
    };
    let driver = tokio::spawn(driver::run(
        kernel,
        desired,
        kicks,
        Some(receiver),
        options,
        status_sender,
    ));
    let first = until(&mut status, "the first pass", |s| {
        s.passes >= 1 && s.converged
    })
    .await;

    deltas.send((0..1000).map(|index| learned(index, "192.168.50.2")));
    let loaded = until(&mut status, "1000 learned routes", |s| {
        s.learned_routes == 1000
    })
    .await;
    assert_eq!(
        loaded.learned_writes, 1000,
        "one write per route: {loaded:?}"
    );
    assert_eq!(
        loaded.passes, first.passes,
        "no full pass for learned routes"
    );

    // A full pass (as after a monitor kick or the periodic resync) finds nothing to do.
    kick_sender.send(()).await.unwrap();
    let resynced = until(&mut status, "a full pass", |s| s.passes > loaded.passes).await;
    assert_eq!(resynced.last_pass_writes, 0, "{resynced:?}");
    assert_eq!(resynced.learned_writes, 1000);

    // One route moves, one goes, one is re-sent unchanged: two writes.
    deltas.send([
        learned(1, "192.168.50.3"),
        (learned(2, "192.168.50.2").0, None),
        learned(3, "192.168.50.2"),
    ]);
    let changed = until(&mut status, "999 routes", |s| s.learned_routes == 999).await;
    assert_eq!(changed.learned_writes, 1002, "{changed:?}");
    assert!(changed.learned_batches > loaded.learned_batches);
    drop(desired_sender);
    driver.await.unwrap();
}
