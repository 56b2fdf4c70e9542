//! Route writes are sent in batches (`src/dataplane/netlink_batch.rs`): on a real kernel, in a
//! namespace of the test's own, more routes than one batch holds are written with one the
//! kernel refuses in the middle; each write gets its own result, the refused one with its errno,
//! and every other route is in the kernel afterwards; deleting them all leaves none.

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use netns_test::*;
use starling::dataplane::kernel::{Change, Kernel, KernelError};
use starling::dataplane::netlink::NetlinkKernel;
use starling::netns;
use starling_calc::spec::{RouteScope, RouteSpec, RouteType};

const ROUTES: usize = 700;
const PROTOCOL: u8 = 81;
const REFUSED: usize = 300;

fn route(index: usize) -> RouteSpec {
    // The refused one: its gateway is on no connected subnet (ENETUNREACH).
    let gateway = if index == REFUSED {
        "203.0.113.9"
    } else {
        "192.168.60.2"
    };
    RouteSpec {
        destination: format!("10.{}.{}.0/24", 100 + index / 256, index % 256)
            .parse()
            .unwrap(),
        route_type: RouteType::Unicast,
        gateway: Some(gateway.parse().unwrap()),
        device: None,
        onlink: false,
        scope: RouteScope::Universe,
        metric: 0,
        mtu: None,
        protocol: PROTOCOL,
    }
}

#[test]
fn batched_route_writes_report_each_result_and_apply_the_rest() {
    if !require_root("batched_route_writes_report_each_result_and_apply_the_rest") {
        return;
    }
    let namespace = netns::create(&netns::unique_name("st-batch")).unwrap();
    let ns = namespace.name();
    ip(ns, "link set lo up");
    ip(ns, "link add eth0 type veth peer name eth0peer");
    ip(ns, "link set eth0peer up");
    ip(ns, "link set eth0 up");
    ip(ns, "addr add 192.168.60.1/24 dev eth0");

    let (results, installed, after_delete) = netns::run_async_in(ns, || async {
        let mut kernel = NetlinkKernel::connect().unwrap();
        let adds: Vec<Change> = (0..ROUTES)
            .map(|i| Change::ReplaceRoute(route(i)))
            .collect();
        let results = kernel.apply(&adds).await;
        let ours = |routes: Vec<RouteSpec>| {
            routes
                .into_iter()
                .filter(|route| route.protocol == PROTOCOL)
                .count()
        };
        let installed = ours(kernel.dump_routes().await.unwrap());
        let deletes: Vec<Change> = (0..ROUTES)
            .filter(|i| *i != REFUSED)
            .map(|i| Change::DeleteRoute(route(i)))
            .collect();
        let deleted = kernel.apply(&deletes).await;
        assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
        let after_delete = ours(kernel.dump_routes().await.unwrap());
        (results, installed, after_delete)
    })
    .unwrap();

    assert_eq!(results.len(), ROUTES);
    for (index, result) in results.iter().enumerate() {
        if index == REFUSED {
            match result {
                Err(KernelError::Netlink {
                    operation, errno, ..
                }) => {
                    assert_eq!(*errno, libc::ENETUNREACH, "{result:?}");
                    assert!(operation.contains("203.0.113.9"), "{operation}");
                }
                other => panic!("route {index}: expected the kernel's refusal, got {other:?}"),
            }
        } else {
            assert!(result.is_ok(), "route {index}: {result:?}");
        }
    }
    assert_eq!(
        installed,
        ROUTES - 1,
        "routes in the kernel after the batch"
    );
    assert_eq!(after_delete, 0, "routes left after deleting them all");
}
