//! Interoperability of the Starling speaker with GoBGP (as a RIB-only iBGP peer) in network
//! namespaces. Root only (skips with a message otherwise).

#[path = "support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "support/bgp_peers.rs"]
mod bgp_peers;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_program, require_root};

use std::time::Duration;

use bgp_daemons::*;
use bgp_peers::*;

const AS: u32 = 64512;

#[test]
fn gobgp_ibgp_routes_both_ways_and_withdrawals() {
    if !require_root("gobgp_ibgp_routes_both_ways_and_withdrawals")
        || !require_program("gobgp_ibgp_routes_both_ways_and_withdrawals", "gobgpd")
    {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("b", 2);
    let (starling_address, gobgp_address) = (Lab::address(0), Lab::address(1));
    let gobgp = GoBgp::start(
        lab.namespace(1),
        directory.path(),
        "gobgpd",
        &gobgp_config(gobgp_address, AS, &[(starling_address, AS)]),
        50051,
    );
    let starling = Starling::start(
        lab.namespace(0),
        speaker_config(
            0,
            AS,
            &["10.244.1.0/26", "10.244.1.64/26"],
            vec![session(gobgp_address, AS, AS, starling_address)],
        ),
    );
    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(gobgp_address)
            && gobgp.established(starling_address)),
        "session never established: {:?} {:?}",
        starling.status(),
        gobgp.try_cli(&format!("neighbor {starling_address}"))
    );
    // Starling's blocks in GoBGP's RIB.
    assert!(
        eventually(Duration::from_secs(10), || {
            let prefixes = gobgp.rib_prefixes();
            prefixes.contains(&"10.244.1.0/26".to_string())
                && prefixes.contains(&"10.244.1.64/26".to_string())
        }),
        "gobgp rib: {:?}",
        gobgp.try_cli("global rib -a ipv4")
    );
    let detail = gobgp.cli("global rib -a ipv4 10.244.1.0/26");
    assert!(
        detail.contains(&starling_address.to_string()),
        "next hop: {detail}"
    );

    // GoBGP's routes in Starling's kernel (GoBGP sets itself as next hop for local routes).
    gobgp.cli("global rib add -a ipv4 10.244.2.0/26 nexthop 10.77.0.12");
    gobgp.cli("global rib add -a ipv4 10.244.2.64/26 nexthop 10.77.0.12 community 64512:100");
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            gobgp_address
        ) && kernel_has(
            lab.namespace(0),
            "10.244.2.64/26",
            gobgp_address
        )),
        "starling kernel: {:?}",
        kernel_routes(lab.namespace(0), "10.244.0.0/16")
    );

    // Withdrawals both ways.
    gobgp.cli("global rib del -a ipv4 10.244.2.64/26");
    assert!(
        eventually(Duration::from_secs(10), || kernel_routes(
            lab.namespace(0),
            "10.244.2.64/26"
        )
        .is_empty()),
        "withdrawn GoBGP route still in the kernel"
    );
    assert!(kernel_has(lab.namespace(0), "10.244.2.0/26", gobgp_address));
    starling.stop(false);
    assert!(
        eventually(Duration::from_secs(10), || gobgp.rib_prefixes().is_empty()
            || gobgp.rib_prefixes() == ["10.244.2.0/26".to_string()]),
        "Starling's routes stayed in GoBGP after a Cease: {:?}",
        gobgp.rib_prefixes()
    );
}
