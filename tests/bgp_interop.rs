//! Interoperability of the Starling speaker with BIRD 2 and GoBGP in network namespaces:
//! sessions come up, routes flow both ways into the receiving namespace's kernel, and
//! withdrawals propagate. Root only (skips with a message otherwise).

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
fn bird_ibgp_routes_both_ways_and_withdrawals() {
    if !require_root("bird_ibgp_routes_both_ways_and_withdrawals")
        || !require_program("bird_ibgp_routes_both_ways_and_withdrawals", "bird")
    {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("a", 2);
    let (starling_address, bird_address) = (Lab::address(0), Lab::address(1));
    let bird = Bird::start(
        lab.namespace(1),
        directory.path(),
        "bird",
        &bird_config(
            bird_address,
            &["10.244.2.0/26", "10.244.2.64/26"],
            &bird_bgp("starling", bird_address, AS, starling_address, AS, ""),
        ),
    );
    let mut starling = Starling::start(
        lab.namespace(0),
        speaker_config(
            0,
            AS,
            &["10.244.1.0/26", "10.244.1.64/26"],
            vec![session(bird_address, AS, AS, starling_address)],
        ),
    );

    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(bird_address)
            && bird.established("starling")),
        "session never established: starling {:?}, bird {:?}",
        starling.status(),
        bird.try_command("show protocols all starling")
    );
    // Starling's blocks reach BIRD's kernel, BIRD's routes reach Starling's kernel.
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(1),
            "10.244.1.0/26",
            starling_address
        ) && kernel_has(
            lab.namespace(1),
            "10.244.1.64/26",
            starling_address
        )),
        "bird kernel: {:?}\n{:?}\n{:?}",
        kernel_routes(lab.namespace(1), "10.244.0.0/16"),
        bird.try_command("show route all"),
        bird.try_command("show protocols all starling")
    );
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            bird_address
        ) && kernel_has(
            lab.namespace(0),
            "10.244.2.64/26",
            bird_address
        )),
        "starling kernel: {:?}",
        kernel_routes(lab.namespace(0), "10.244.0.0/16")
    );
    let row = starling
        .status()
        .into_iter()
        .find(|row| row.address == std::net::IpAddr::V4(bird_address))
        .unwrap();
    assert_eq!(
        (row.state.as_str(), row.info.as_str()),
        ("up", "Established")
    );
    assert_eq!(row.peer_type, "global");

    // Withdrawal from Starling: stop originating one block.
    let mut config = starling.config.clone();
    config
        .originated
        .retain(|prefix| prefix.to_string() != "10.244.1.64/26");
    starling.update(config);
    assert!(
        eventually(Duration::from_secs(10), || !kernel_has(
            lab.namespace(1),
            "10.244.1.64/26",
            starling_address
        )),
        "withdrawn block still in bird's kernel"
    );
    assert!(kernel_has(
        lab.namespace(1),
        "10.244.1.0/26",
        starling_address
    ));

    // Withdrawal from BIRD: disable its static routes.
    bird.try_command("disable static4").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || kernel_routes(
            lab.namespace(0),
            "10.244.2.0/24"
        )
        .is_empty()),
        "bird's withdrawn routes still in starling's kernel: {:?}",
        kernel_routes(lab.namespace(0), "10.244.2.0/24")
    );
    // The session survived the configuration change.
    assert!(starling.established(bird_address));
}

#[test]
fn bird_ebgp_with_four_octet_as() {
    if !require_root("bird_ebgp_with_four_octet_as")
        || !require_program("bird_ebgp_with_four_octet_as", "bird")
    {
        return;
    }
    const STARLING_AS: u32 = 4_200_000_001;
    const BIRD_AS: u32 = 64513;
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("d", 2);
    let (starling_address, bird_address) = (Lab::address(0), Lab::address(1));
    let bird = Bird::start(
        lab.namespace(1),
        directory.path(),
        "bird",
        &bird_config(
            bird_address,
            &["10.244.2.0/26"],
            &bird_bgp(
                "starling",
                bird_address,
                BIRD_AS,
                starling_address,
                STARLING_AS,
                "",
            ),
        ),
    );
    let starling = Starling::start(
        lab.namespace(0),
        speaker_config(
            0,
            STARLING_AS,
            &["10.244.1.0/26"],
            vec![session(
                bird_address,
                BIRD_AS,
                STARLING_AS,
                starling_address,
            )],
        ),
    );
    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(bird_address)
            && bird.established("starling")),
        "session never established: {:?}",
        starling.status()
    );
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(1),
            "10.244.1.0/26",
            starling_address
        )),
        "bird kernel: {:?}",
        bird.try_command("show route all")
    );
    // The AS path carries the 4-octet AS as it is, and BIRD saw a 4-octet AS session.
    let route = bird.try_command("show route all 10.244.1.0/26").unwrap();
    assert!(
        route.contains("BGP.as_path: 4200000001"),
        "as path in bird: {route}"
    );
    let protocol = bird.try_command("show protocols all starling").unwrap();
    assert!(protocol.contains("external AS4"), "{protocol}");
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            bird_address
        )),
        "starling kernel: {:?}",
        kernel_routes(lab.namespace(0), "10.244.0.0/16")
    );
}

#[test]
fn md5_password_right_establishes_wrong_never_does() {
    if !require_root("md5_password_right_establishes_wrong_never_does")
        || !require_program("md5_password_right_establishes_wrong_never_does", "bird")
    {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("e", 3);
    let starling_address = Lab::address(0);
    let (right_address, wrong_address) = (Lab::address(1), Lab::address(2));
    let right = Bird::start(
        lab.namespace(1),
        directory.path(),
        "right",
        &bird_config(
            right_address,
            &["10.244.2.0/26"],
            &bird_bgp(
                "starling",
                right_address,
                AS,
                starling_address,
                AS,
                "password \"calico-secret\";",
            ),
        ),
    );
    let wrong = Bird::start(
        lab.namespace(2),
        directory.path(),
        "wrong",
        &bird_config(
            wrong_address,
            &["10.244.3.0/26"],
            &bird_bgp(
                "starling",
                wrong_address,
                AS,
                starling_address,
                AS,
                "password \"not-the-secret\";",
            ),
        ),
    );
    let mut config = speaker_config(
        0,
        AS,
        &["10.244.1.0/26"],
        vec![
            session(right_address, AS, AS, starling_address),
            session(wrong_address, AS, AS, starling_address),
        ],
    );
    for name in config.sessions.keys().cloned().collect::<Vec<_>>() {
        config.passwords.insert(name, "calico-secret".into());
    }
    let starling = Starling::start(lab.namespace(0), config);
    assert!(
        eventually(Duration::from_secs(20), || starling
            .established(right_address)
            && right.established("starling")),
        "MD5 session never established: {:?} {:?}",
        starling.status(),
        right.try_command("show protocols all starling")
    );
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            right_address
        )),
        "route over the MD5 session missing"
    );
    // The wrong password: both sides keep trying for 10 s and never get there.
    let watched_until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < watched_until {
        assert!(
            !starling.established(wrong_address) && !wrong.established("starling"),
            "session with the wrong password established"
        );
        assert!(kernel_routes(lab.namespace(0), "10.244.3.0/26").is_empty());
        std::thread::sleep(Duration::from_millis(200));
    }
    let row = starling
        .status()
        .into_iter()
        .find(|row| row.address == std::net::IpAddr::V4(wrong_address))
        .unwrap();
    assert_eq!(row.state, "start", "{row:?}");
}

#[test]
fn bird_ibgp_over_ipv6() {
    if !require_root("bird_ibgp_over_ipv6") || !require_program("bird_ibgp_over_ipv6", "bird") {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("v", 2);
    let (starling_address, bird_address) = (Lab::address6(0), Lab::address6(1));
    let bird = Bird::start(
        lab.namespace(1),
        directory.path(),
        "bird",
        &format!(
            "router id {};
protocol device {{ scan time 2; }}
protocol kernel {{ ipv6 {{ import none; export filter {{ if source = RTS_BGP then accept; reject; }}; }}; }}
protocol static {{ ipv6; route fd00:244:2::/64 blackhole; }}
protocol bgp starling {{
  local {bird_address} as {AS};
  neighbor {starling_address} as {AS};
  direct; connect delay time 1; connect retry time 2;
  ipv6 {{ import all; export all; }};
}}
",
            Lab::address(1)
        ),
    );
    let mut spec = session(Lab::address(1), AS, AS, Lab::address(0));
    spec.name = "Global_fd77__12".into();
    spec.peer_address = bird_address.into();
    spec.source_address = Some(starling_address.into());
    let mut config = speaker_config(0, AS, &["fd00:244:1::/64"], vec![spec]);
    config.policy.pools[0].cidr = "fd00:244::/48".parse().unwrap();
    let starling = Starling::start(lab.namespace(0), config);
    assert!(
        eventually(Duration::from_secs(30), || bird.established("starling")),
        "IPv6 session never established: {:?}",
        starling.status()
    );
    let has = |namespace: &str, prefix: &str, gateway: std::net::Ipv6Addr| {
        let text = run(
            "ip",
            &["-n", namespace, "-6", "-j", "route", "show", prefix],
        );
        let routes: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        routes
            .iter()
            .any(|route| route["gateway"].as_str() == Some(&gateway.to_string()))
    };
    assert!(
        eventually(Duration::from_secs(10), || has(
            lab.namespace(1),
            "fd00:244:1::/64",
            starling_address
        )),
        "bird: {:?}",
        bird.try_command("show route all")
    );
    assert!(
        eventually(Duration::from_secs(10), || has(
            lab.namespace(0),
            "fd00:244:2::/64",
            bird_address
        )),
        "starling kernel: {}",
        run("ip", &["-n", lab.namespace(0), "-6", "route"])
    );
}
