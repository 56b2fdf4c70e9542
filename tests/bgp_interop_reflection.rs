//! Route reflection interop (RFC 4456) in network namespaces: FRR reflecting between two
//! Starling clients, and Starling reflecting between two BIRD clients. Each client must get the
//! other's routes into its kernel with the originating client as next hop. Root only.

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
fn frr_reflects_between_two_starling_clients() {
    if !require_root("frr_reflects_between_two_starling_clients")
        || !require_program(
            "frr_reflects_between_two_starling_clients",
            "/usr/lib/frr/bgpd",
        )
    {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("c", 3);
    let (first, second, reflector) = (Lab::address(0), Lab::address(1), Lab::address(2));
    let frr = Frr::start(
        lab.namespace(2),
        directory.path(),
        &format!(
            "frr defaults traditional
hostname reflector
router bgp {AS}
 bgp router-id {reflector}
 no bgp ebgp-requires-policy
 neighbor {first} remote-as {AS}
 neighbor {first} timers connect 2
 neighbor {second} remote-as {AS}
 neighbor {second} timers connect 2
 address-family ipv4 unicast
  neighbor {first} route-reflector-client
  neighbor {second} route-reflector-client
 exit-address-family
"
        ),
    );
    let first_speaker = Starling::start(
        lab.namespace(0),
        speaker_config(
            0,
            AS,
            &["10.244.1.0/26"],
            vec![session(reflector, AS, AS, first)],
        ),
    );
    let second_speaker = Starling::start(
        lab.namespace(1),
        speaker_config(
            1,
            AS,
            &["10.244.2.0/26"],
            vec![session(reflector, AS, AS, second)],
        ),
    );
    assert!(
        eventually(Duration::from_secs(30), || first_speaker
            .established(reflector)
            && second_speaker.established(reflector)
            && frr.established(first)
            && frr.established(second)),
        "sessions: {:?} {:?} {:?}",
        first_speaker.status(),
        second_speaker.status(),
        frr.try_vtysh("show bgp summary")
    );
    assert!(
        eventually(Duration::from_secs(15), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            second
        ) && kernel_has(
            lab.namespace(1),
            "10.244.1.0/26",
            first
        )),
        "kernels: {:?} {:?}; frr: {:?}",
        kernel_routes(lab.namespace(0), "10.244.0.0/16"),
        kernel_routes(lab.namespace(1), "10.244.0.0/16"),
        frr.try_vtysh("show bgp ipv4 unicast")
    );
    // A withdrawal travels through the reflector as well.
    let mut config = second_speaker.config.clone();
    config.originated.clear();
    let mut second_speaker = second_speaker;
    second_speaker.update(config);
    assert!(
        eventually(Duration::from_secs(10), || kernel_routes(
            lab.namespace(0),
            "10.244.2.0/26"
        )
        .is_empty()),
        "reflected withdrawal did not arrive"
    );
}

#[test]
fn starling_reflects_between_two_bird_clients() {
    if !require_root("starling_reflects_between_two_bird_clients")
        || !require_program("starling_reflects_between_two_bird_clients", "bird")
    {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("r", 3);
    let (reflector, first, second) = (Lab::address(0), Lab::address(1), Lab::address(2));
    let cluster_id: std::net::Ipv4Addr = "224.0.0.1".parse().unwrap();
    let mut birds = Vec::new();
    for (index, address, block) in [(1, first, "10.244.2.0/26"), (2, second, "10.244.3.0/26")] {
        birds.push(Bird::start(
            lab.namespace(index),
            directory.path(),
            &format!("client{index}"),
            &bird_config(
                address,
                &[block],
                &bird_bgp("reflector", address, AS, reflector, AS, ""),
            ),
        ));
    }
    let sessions = [first, second]
        .into_iter()
        .map(|client| {
            let mut spec = session(client, AS, AS, reflector);
            spec.route_reflector_client_cluster_id = Some(cluster_id);
            spec
        })
        .collect();
    let starling = Starling::start(
        lab.namespace(0),
        speaker_config(0, AS, &["10.244.1.0/26"], sessions),
    );
    assert!(
        eventually(Duration::from_secs(30), || starling.established(first)
            && starling.established(second)
            && birds.iter().all(|bird| bird.established("reflector"))),
        "sessions: {:?}",
        starling.status()
    );
    // Each client has the other's block via the other client, and the reflector's own block.
    assert!(
        eventually(Duration::from_secs(15), || kernel_has(
            lab.namespace(1),
            "10.244.3.0/26",
            second
        ) && kernel_has(
            lab.namespace(2),
            "10.244.2.0/26",
            first
        ) && kernel_has(
            lab.namespace(1),
            "10.244.1.0/26",
            reflector
        )),
        "client kernels: {:?} {:?}; {:?}",
        kernel_routes(lab.namespace(1), "10.244.0.0/16"),
        kernel_routes(lab.namespace(2), "10.244.0.0/16"),
        birds[0].try_command("show route all")
    );
    let reflected = birds[0]
        .try_command("show route all 10.244.3.0/26")
        .unwrap();
    assert!(
        reflected.contains("BGP.originator_id: 10.77.0.13")
            && reflected.contains("BGP.cluster_list: 224.0.0.1"),
        "reflection attributes: {reflected}"
    );
    // The reflector also installs both clients' routes itself.
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            first
        ) && kernel_has(
            lab.namespace(0),
            "10.244.3.0/26",
            second
        )),
        "reflector kernel: {:?}",
        kernel_routes(lab.namespace(0), "10.244.0.0/16")
    );
}
