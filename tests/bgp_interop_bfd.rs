//! BFD (RFC 5880/5881) interop in network namespaces: Starling with `starling/bfd-interval`
//! 100 ms × 3 on its session to BIRD 2 (`protocol bfd` + `bfd on`, iBGP) and to FRR (zebra,
//! bfdd and bgpd with `neighbor X bfd profile`, eBGP: FRR runs BFD single-hop only for a
//! directly connected eBGP peer), BFD comes Up on both ends; when the peer's link is cut (its veth set down, the
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
use std::path::{Path, PathBuf};
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

/// FRR with BFD: bgpd registers its BFD peers with zebra, which relays them to bfdd, so all
/// three run, sharing one zserv socket in the test's directory. zebra and bfdd refuse to run as
/// a user outside the `frrvty` group, so they run as `frr` (the package's user) in a directory
/// it owns; bgpd skips the user change (`-S`) as in the other FRR tests.
struct FrrBfd {
    // Dropped (killed) bgpd first, zebra last.
    _bgpd: Daemon,
    _bfdd: Daemon,
    _zebra: Daemon,
    directory: PathBuf,
}

impl FrrBfd {
    fn start(namespace: &str, directory: &Path, bfdd_config: &str, bgpd_config: &str) -> FrrBfd {
        let directory = directory.join("frr");
        std::fs::create_dir_all(&directory).unwrap();
        run("chown", &["frr:frr", directory.to_str().unwrap()]);
        let path = |name: &str| directory.join(name).display().to_string();
        let spawn = |daemon: &str, config: &str, extra: &[&str]| {
            let config_path = directory.join(format!("{daemon}.conf"));
            std::fs::write(&config_path, config).unwrap();
            let mut arguments: Vec<String> = vec![
                format!("/usr/lib/frr/{daemon}"),
                "-f".into(),
                config_path.display().to_string(),
                "-z".into(),
                path("zserv.api"),
                "-i".into(),
                path(&format!("{daemon}.pid")),
                "--vty_socket".into(),
                directory.display().to_string(),
            ];
            arguments.extend(extra.iter().map(|argument| argument.to_string()));
            Daemon::spawn(
                namespace,
                daemon,
                &arguments,
                &directory.join(format!("{daemon}.log")),
            )
        };
        let zebra = spawn("zebra", "hostname frr\n", &["-u", "frr", "-g", "frr"]);
        // bgpd and bfdd connect to zebra's socket; they retry, but starting them once it
        // exists keeps the first registration quick.
        assert!(
            eventually(Duration::from_secs(10), || directory
                .join("zserv.api")
                .exists()),
            "zebra did not start: {}",
            std::fs::read_to_string(directory.join("zebra.log")).unwrap_or_default()
        );
        let bfdctl = path("bfdd.sock");
        let bfdd = spawn(
            "bfdd",
            bfdd_config,
            &["-u", "frr", "-g", "frr", "--bfdctl", &bfdctl],
        );
        let bgpd = spawn("bgpd", bgpd_config, &["-S", "-u", "root", "-g", "root"]);
        let frr = FrrBfd {
            _bgpd: bgpd,
            _bfdd: bfdd,
            _zebra: zebra,
            directory,
        };
        for daemon in ["bfdd", "bgpd"] {
            assert!(
                eventually(Duration::from_secs(10), || frr
                    .try_vtysh(daemon, "show version")
                    .is_some()),
                "{daemon} did not start: {}",
                std::fs::read_to_string(frr.directory.join(format!("{daemon}.log")))
                    .unwrap_or_default()
            );
        }
        frr
    }

    fn try_vtysh(&self, daemon: &str, command: &str) -> Option<String> {
        try_output(
            "vtysh",
            &[
                "--vty_socket",
                self.directory.to_str().unwrap(),
                "-d",
                daemon,
                "-c",
                command,
            ],
        )
    }

    fn established(&self, neighbor: Ipv4Addr) -> bool {
        self.try_vtysh("bgpd", &format!("show bgp neighbors {neighbor} json"))
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|value| value[neighbor.to_string()]["bgpState"] == "Established")
    }

    /// bfdd's session to `peer`: (status, local receive interval in ms, remote detect
    /// multiplier), from `show bfd peers json`.
    fn bfd_peer(&self, peer: Ipv4Addr) -> Option<(String, u64, u64)> {
        let text = self.try_vtysh("bfdd", "show bfd peers json")?;
        let peers: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
        let row = peers
            .into_iter()
            .find(|row| row["peer"].as_str() == Some(&peer.to_string()))?;
        Some((
            row["status"].as_str()?.to_string(),
            row["receive-interval"].as_u64()?,
            row["remote-detect-multiplier"].as_u64()?,
        ))
    }
}

#[test]
fn frr_bfd_down_withdraws_routes_at_once() {
    let test = "frr_bfd_down_withdraws_routes_at_once";
    if !require_root(test)
        || !require_programs(
            test,
            &[
                "/usr/lib/frr/zebra",
                "/usr/lib/frr/bfdd",
                "/usr/lib/frr/bgpd",
                "vtysh",
            ],
        )
    {
        return;
    }
    const FRR_AS: u32 = 64513;
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("f", 2);
    let (starling_address, frr_address) = (Lab::address(0), Lab::address(1));
    let frr = FrrBfd::start(
        lab.namespace(1),
        directory.path(),
        "bfd
 profile fast
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 !
!
",
        &format!(
            "frr defaults traditional
hostname frr
router bgp {FRR_AS}
 bgp router-id {frr_address}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {starling_address} remote-as {AS}
 neighbor {starling_address} timers connect 2
 neighbor {starling_address} bfd
 neighbor {starling_address} bfd profile fast
 address-family ipv4 unicast
  network 10.244.2.0/26
 exit-address-family
"
        ),
    );
    // BFD is switched on for the running session (as an annotation added to a live BGPPeer
    // does): it starts on the Established connection, BGP untouched.
    let mut spec = session(frr_address, FRR_AS, AS, starling_address);
    let mut starling = Starling::start(
        lab.namespace(0),
        speaker_config(0, AS, &["10.244.1.0/26"], vec![spec.clone()]),
    );
    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(frr_address)),
        "no session: {:?}",
        starling.status()
    );
    spec.bfd = Some(FAST);
    starling.update(speaker_config(0, AS, &["10.244.1.0/26"], vec![spec]));
    // FRR has taken Starling's 3 as multiplier: the Control packets got through both ways.
    let frr_bfd_up = || frr.bfd_peer(starling_address) == Some(("up".to_string(), 100, 3));
    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(frr_address)
            && frr.established(starling_address)
            && kernel_has(lab.namespace(0), "10.244.2.0/26", frr_address)
            && starling_bfd(&starling, frr_address).as_deref() == Some("Up")
            && frr_bfd_up()),
        "BFD not up: starling {:?}, frr {:?}",
        starling.status(),
        frr.try_vtysh("bfdd", "show bfd peers")
    );
    // The routes go both ways: zebra installed Starling's block in FRR's kernel.
    assert!(
        eventually(Duration::from_secs(10), || kernel_has(
            lab.namespace(1),
            "10.244.1.0/26",
            starling_address
        )),
        "FRR's kernel: {:?}",
        kernel_routes(lab.namespace(1), "10.244.0.0/16")
    );

    let detection = cut_and_time(&lab, 1, "10.244.2.0/26", frr_address);
    println!("FRR: routes removed {detection:?} after the link was cut");
    assert!(detection < Duration::from_secs(2), "took {detection:?}");
    assert_eq!(
        starling_bfd(&starling, frr_address).as_deref(),
        Some("Down")
    );
    assert!(
        !starling.established(frr_address),
        "{:?}",
        starling.status()
    );
    // FRR's daemons kept running through the cut.
    assert!(frr.try_vtysh("bgpd", "show version").is_some());

    restore(&lab, 1);
    assert!(
        eventually(Duration::from_secs(30), || kernel_has(
            lab.namespace(0),
            "10.244.2.0/26",
            frr_address
        ) && starling_bfd(
            &starling,
            frr_address
        )
        .as_deref()
            == Some("Up")
            && frr_bfd_up()),
        "BFD and BGP did not come back: {:?}, frr {:?}",
        starling.status(),
        frr.try_vtysh("bfdd", "show bfd peers")
    );
}
