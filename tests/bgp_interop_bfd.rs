//! BFD (RFC 5880/5881) interop in network namespaces: Starling with `starling/bfd-interval`
//! 100 ms × 3 on its session to BIRD 2 (`protocol bfd` + `bfd on`) and to FRR (bfdd + bgpd
//! with zebra), BFD comes Up on both ends; when the peer's link is cut (its veth set down, the
//! daemon left running) Starling ends the BGP session on BFD Down and removes the peer's routes
//! from its kernel in well under a second, far below any hold time, though graceful restart is
//! negotiated. When the link returns, BFD and BGP come back. Root only.

#[path = "support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "support/bgp_peers.rs"]
mod bgp_peers;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_programs, require_root};

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp_daemons::*;
use bgp_peers::*;
use starling_model::bgp::BfdSettings;

const AS: u32 = 64512;
const FAST: BfdSettings = BfdSettings {
    interval: Duration::from_millis(100),
    multiplier: 3,
};

fn starling_bfd(starling: &Starling, peer: Ipv4Addr) -> Option<String> {
    starling
        .status()
        .into_iter()
        .find(|row| row.address == std::net::IpAddr::V4(peer))
        .and_then(|row| row.bfd)
}

/// Cuts the peer's link, waits until Starling removed `prefix`, and returns how long it took.
fn cut_and_time(lab: &Lab, peer_index: usize, prefix: &str, gateway: Ipv4Addr) -> Duration {
    let cut = Instant::now();
    run(
        "ip",
        &[
            "-n",
            lab.namespace(peer_index),
            "link",
            "set",
            "eth0",
            "down",
        ],
    );
    assert!(
        eventually(Duration::from_secs(10), || !kernel_has(
            lab.namespace(0),
            prefix,
            gateway
        )),
        "Starling kept {prefix} after the link was cut"
    );
    cut.elapsed()
}

fn restore(lab: &Lab, peer_index: usize) {
    run(
        "ip",
        &["-n", lab.namespace(peer_index), "link", "set", "eth0", "up"],
    );
}

#[test]
fn bird_bfd_down_withdraws_routes_at_once() {
    let test = "bird_bfd_down_withdraws_routes_at_once";
    if !require_root(test) || !require_programs(test, &["bird", "birdc"]) {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("d", 2);
    let (starling_address, bird_address) = (Lab::address(0), Lab::address(1));
    let bgp = format!(
        "protocol bfd {{ interface \"eth0\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}\n{}",
        bird_bgp(
            "starling",
            bird_address,
            AS,
            starling_address,
            AS,
            "bfd on; hold time 90;"
        )
    );
    let bird = Bird::start(
        lab.namespace(1),
        directory.path(),
        "bird",
        &bird_config(bird_address, &["10.244.2.0/26"], &bgp),
    );
    let mut spec = session(bird_address, AS, AS, starling_address);
    spec.bfd = Some(FAST);
    let starling = Starling::start(
        lab.namespace(0),
        speaker_config(0, AS, &["10.244.1.0/26"], vec![spec]),
    );
    let bird_bfd_up = || {
        bird.try_command("show bfd sessions").is_some_and(|text| {
            text.lines()
                .any(|line| line.contains(&starling_address.to_string()) && line.contains("Up"))
        })
    };
    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(bird_address)
            && kernel_has(lab.namespace(0), "10.244.2.0/26", bird_address)
            && starling_bfd(&starling, bird_address).as_deref() == Some("Up")
            && bird_bfd_up()),
        "BFD not up: starling {:?}, bird {:?}",
        starling.status(),
        bird.try_command("show bfd sessions")
    );

    let detection = cut_and_time(&lab, 1, "10.244.2.0/26", bird_address);
    println!("BIRD: routes removed {detection:?} after the link was cut");
    // 300 ms detection plus polling; the hold time (90 s) and restart time never apply.
    assert!(detection < Duration::from_secs(2), "took {detection:?}");
    let row = starling
        .status()
        .into_iter()
        .find(|row| row.address == std::net::IpAddr::V4(bird_address))
        .unwrap();
    assert_eq!(row.bfd.as_deref(), Some("Down"));
    assert!(!row.info.starts_with("Established"), "{row:?}");

    restore(&lab, 1);
    assert!(
        eventually(Duration::from_secs(30), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            bird_address
        ) && starling_bfd(
            &starling,
            bird_address
        )
        .as_deref()
            == Some("Up")),
        "BFD and BGP did not come back: {:?}",
        starling.status()
    );
}
