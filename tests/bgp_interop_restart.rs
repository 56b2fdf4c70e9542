//! Graceful restart (RFC 4724) interop with BIRD 2 in network namespaces: as helper, Starling
//! keeps a crashed peer's routes in the kernel while it restarts, refreshes them when it is
//! back (End-of-RIB sweeps what it no longer announces), and sweeps everything when the peer
//! stays away past its restart time; as restarting speaker, a graceful shutdown leaves our
//! routes with BIRD until we are back. Root only.

#[path = "support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "support/bgp_peers.rs"]
mod bgp_peers;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_program, require_root};

use std::time::{Duration, Instant};

use bgp_daemons::*;
use bgp_peers::*;

const AS: u32 = 64512;

#[test]
fn peer_restart_keeps_routes_then_refreshes_and_sweeps() {
    if !require_root("peer_restart_keeps_routes_then_refreshes_and_sweeps")
        || !require_program(
            "peer_restart_keeps_routes_then_refreshes_and_sweeps",
            "bird",
        )
    {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("f", 2);
    let (starling_address, bird_address) = (Lab::address(0), Lab::address(1));
    let bgp = bird_bgp(
        "starling",
        bird_address,
        AS,
        starling_address,
        AS,
        "graceful restart time 10;",
    );
    let mut bird = Bird::start(
        lab.namespace(1),
        directory.path(),
        "bird",
        &bird_config(bird_address, &["10.244.2.0/26", "10.244.2.64/26"], &bgp),
    );
    let starling = Starling::start(
        lab.namespace(0),
        speaker_config(
            0,
            AS,
            &["10.244.1.0/26"],
            vec![session(bird_address, AS, AS, starling_address)],
        ),
    );
    let both = |lab: &Lab| {
        kernel_has(lab.namespace(0), "10.244.2.0/26", bird_address)
            && kernel_has(lab.namespace(0), "10.244.2.64/26", bird_address)
    };
    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(bird_address)
            && both(&lab)),
        "not established: {:?}",
        starling.status()
    );

    // BIRD crashes: the session drops but the routes stay in the kernel as stale.
    bird.daemon.kill();
    assert!(
        eventually(Duration::from_secs(10), || !starling
            .established(bird_address)),
        "Starling did not notice the peer going away"
    );
    let watched_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watched_until {
        assert!(both(&lab), "routes left the kernel while the peer restarts");
        std::thread::sleep(Duration::from_millis(100));
    }

    // BIRD comes back announcing only one of the two: End-of-RIB sweeps the other, and the
    // remaining route never leaves the kernel.
    std::fs::write(
        &bird.config,
        bird_config(bird_address, &["10.244.2.0/26"], &bgp),
    )
    .unwrap();
    bird.restart();
    let started = Instant::now();
    let mut swept = false;
    while started.elapsed() < Duration::from_secs(20) {
        assert!(
            kernel_has(lab.namespace(0), "10.244.2.0/26", bird_address),
            "the refreshed route flapped during the restart"
        );
        if starling.established(bird_address)
            && kernel_routes(lab.namespace(0), "10.244.2.64/26").is_empty()
        {
            swept = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        swept,
        "stale route not swept after End-of-RIB: {:?}",
        starling.status()
    );
    // Well before BIRD's 10 s restart time ran out: the sweep came from End-of-RIB.
    assert!(started.elapsed() < Duration::from_secs(9));

    // BIRD crashes and stays away: its routes go when its restart time (10 s) is over.
    bird.daemon.kill();
    let crashed = Instant::now();
    assert!(eventually(Duration::from_secs(10), || !starling
        .established(bird_address)));
    assert!(kernel_has(lab.namespace(0), "10.244.2.0/26", bird_address));
    assert!(
        eventually(Duration::from_secs(20), || kernel_routes(
            lab.namespace(0),
            "10.244.2.0/26"
        )
        .is_empty()),
        "stale routes outlived the restart time"
    );
    assert!(
        crashed.elapsed() >= Duration::from_secs(9),
        "stale routes swept too early: {:?}",
        crashed.elapsed()
    );
}

#[test]
fn graceful_shutdown_leaves_our_routes_with_the_peer() {
    if !require_root("graceful_shutdown_leaves_our_routes_with_the_peer")
        || !require_program("graceful_shutdown_leaves_our_routes_with_the_peer", "bird")
    {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("g", 2);
    let (starling_address, bird_address) = (Lab::address(0), Lab::address(1));
    let bird = Bird::start(
        lab.namespace(1),
        directory.path(),
        "bird",
        &bird_config(
            bird_address,
            &["10.244.2.0/26"],
            &bird_bgp("starling", bird_address, AS, starling_address, AS, ""),
        ),
    );
    let config = speaker_config(
        0,
        AS,
        &["10.244.1.0/26"],
        vec![session(bird_address, AS, AS, starling_address)],
    );
    let starling = Starling::start(lab.namespace(0), config.clone());
    assert!(
        eventually(Duration::from_secs(30), || kernel_has(
            lab.namespace(1),
            "10.244.1.0/26",
            starling_address
        )),
        "route never reached BIRD"
    );
    starling.stop(true);
    assert!(
        eventually(Duration::from_secs(10), || !bird.established("starling")),
        "BIRD did not notice the shutdown"
    );
    // BIRD keeps our route (stale) while we are away.
    let watched_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watched_until {
        assert!(
            kernel_has(lab.namespace(1), "10.244.1.0/26", starling_address),
            "BIRD dropped our routes after a graceful shutdown"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let restarted = Starling::start_restarting(lab.namespace(0), config);
    assert!(
        eventually(Duration::from_secs(30), || restarted
            .established(bird_address)
            && bird.established("starling")),
        "no session after our restart"
    );
    let protocol = bird.try_command("show protocols all starling").unwrap();
    assert!(
        kernel_has(lab.namespace(1), "10.244.1.0/26", starling_address),
        "route lost after our restart: {protocol}"
    );
}
