//! BGPFilter interop with BIRD 2 in network namespaces: BIRD sees only what Starling's export
//! filter lets through (`birdc show route`), routes Starling's import filter refuses never reach
//! Starling's kernel (`ip route`), and changing the filters takes effect on the running session
//! (a looser import filter brings the refused routes back through a ROUTE-REFRESH, a stricter
//! export filter withdraws from BIRD) without a new TCP connection; an import rule's
//! `interface` matches the session's interface, an export rule's the route's (a borrowed
//! workload /32's veth; blocks have none). A peer naming a missing filter exchanges nothing.
//! Root only.

#[path = "support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "support/bgp_peers.rs"]
mod bgp_peers;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_program, require_root};

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bgp_daemons::*;
use bgp_peers::*;
use ipnet::IpNet;
use serde_json::{json, Value};
use starling_bgp::filter::{FilterChain, FilterSet};
use starling_model::validate::bgpfilter::validate_bgp_filter;

const AS: u32 = 64512;
/// Starling's blocks (inside the lab pool) and one prefix outside every pool, which Calico's
/// own export rules would never send and only a filter's Accept lets out.
const STARLING_ROUTES: [&str; 4] = [
    "10.244.1.0/26",
    "10.244.1.64/26",
    "10.244.1.128/26",
    "192.168.50.0/24",
];
const BIRD_ROUTES: [&str; 4] = [
    "10.244.2.0/26",
    "10.244.2.64/26",
    "172.30.0.0/24",
    "172.30.1.0/24",
];

/// One BGPFilter, validated as the daemon does.
fn filter_set(filters: &[(&str, Value)]) -> FilterSet {
    filters
        .iter()
        .map(|(name, spec)| {
            let spec = serde_json::from_value(spec.clone()).unwrap();
            let filter = validate_bgp_filter(name, &spec).unwrap();
            (name.to_string(), Ok(Arc::new(filter)))
        })
        .collect()
}

fn chain(names: &[&str], known: &FilterSet) -> FilterChain {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    FilterChain::resolve("tor", &names, known)
}

/// Prefixes BIRD holds from its `starling` protocol (first column of `show route`).
fn bird_routes_from_starling(bird: &Bird) -> BTreeSet<String> {
    bird.try_command("show route protocol starling")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.parse::<IpNet>().is_ok())
        .map(str::to_string)
        .collect()
}

/// BIRD's routes present in Starling's kernel via BIRD.
fn kernel_routes_from_bird(namespace: &str, bird_address: Ipv4Addr) -> BTreeSet<String> {
    BIRD_ROUTES
        .iter()
        .filter(|prefix| kernel_has(namespace, prefix, bird_address))
        .map(|prefix| prefix.to_string())
        .collect()
}

fn set(prefixes: &[&str]) -> BTreeSet<String> {
    prefixes.iter().map(|prefix| prefix.to_string()).collect()
}

/// The BGP session's TCP connection as `ss` shows it, local and peer address:port only (a
/// session reset makes a new one; the queue columns change with traffic in flight).
fn bgp_connection(namespace: &str) -> String {
    let line = run(
        "ip",
        &[
            "netns",
            "exec",
            namespace,
            "ss",
            "-Htn",
            "state",
            "established",
            "( sport = :179 or dport = :179 )",
        ],
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    words[words.len().saturating_sub(2)..].join(" ")
}

struct Setup {
    lab: Lab,
    _directory: tempfile::TempDir,
    bird: Bird,
    starling: Starling,
    bird_address: Ipv4Addr,
}

/// BIRD announcing [`BIRD_ROUTES`], Starling originating [`STARLING_ROUTES`] with `filters`
/// on its session, both up.
fn setup(tag: &str, filters: FilterChain) -> Setup {
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new(tag, 2);
    let (starling_address, bird_address) = (Lab::address(0), Lab::address(1));
    let bird = Bird::start(
        lab.namespace(1),
        directory.path(),
        "bird",
        &bird_config(
            bird_address,
            &BIRD_ROUTES,
            &bird_bgp("starling", bird_address, AS, starling_address, AS, ""),
        ),
    );
    let mut spec = session(bird_address, AS, AS, starling_address);
    spec.filters = filters;
    let mut config = speaker_config(0, AS, &STARLING_ROUTES[..3], vec![spec]);
    config.originated.push(STARLING_ROUTES[3].parse().unwrap());
    let starling = Starling::start(lab.namespace(0), config);
    assert!(
        eventually(Duration::from_secs(30), || starling
            .established(bird_address)
            && bird.established("starling")),
        "session never established: starling {:?}, bird {:?}",
        starling.status(),
        bird.try_command("show protocols all starling")
    );
    Setup {
        lab,
        _directory: directory,
        bird,
        starling,
        bird_address,
    }
}

impl Setup {
    fn set_filters(&mut self, filters: FilterChain) {
        let mut config = self.starling.config.clone();
        for spec in config.sessions.values_mut() {
            spec.filters = filters.clone();
        }
        self.starling.update(config);
    }

    /// Waits until BIRD holds exactly `expected` from Starling.
    fn expect_bird_has(&self, expected: &[&str], what: &str) {
        let expected = set(expected);
        assert!(
            eventually(Duration::from_secs(15), || bird_routes_from_starling(
                &self.bird
            ) == expected),
            "{what}: bird has {:?}, expected {expected:?}\n{:?}",
            bird_routes_from_starling(&self.bird),
            self.bird.try_command("show route all")
        );
    }

    /// Waits until Starling's kernel holds exactly `expected` of BIRD's routes.
    fn expect_kernel_has(&self, expected: &[&str], what: &str) {
        let expected = set(expected);
        let namespace = self.lab.namespace(0);
        assert!(
            eventually(Duration::from_secs(15), || kernel_routes_from_bird(
                namespace,
                self.bird_address
            ) == expected),
            "{what}: starling's kernel has {:?}, expected {expected:?}; all routes: {:?}",
            kernel_routes_from_bird(namespace, self.bird_address),
            run("ip", &["-n", namespace, "route", "show"])
        );
    }
}

#[test]
fn bird_sees_only_what_filters_allow_and_changes_apply_in_place() {
    if !require_root("bird_sees_only_what_filters_allow_and_changes_apply_in_place")
        || !require_program(
            "bird_sees_only_what_filters_allow_and_changes_apply_in_place",
            "bird",
        )
    {
        return;
    }
    // Export: the middle block is held back, the non-pool prefix let out; the rest falls
    // through to Calico's rules (own blocks go). Import: 172.30.0.0/16 refused.
    let export = |extra: Vec<Value>| {
        let mut rules = vec![
            json!({"action": "Reject", "matchOperator": "Equal", "cidr": "10.244.1.64/26"}),
            json!({"action": "Accept", "matchOperator": "In", "cidr": "192.168.50.0/24"}),
        ];
        rules.extend(extra);
        json!({"exportV4": rules})
    };
    let strict_import = json!({"importV4": [
        {"action": "Reject", "matchOperator": "In", "cidr": "172.30.0.0/16"}
    ]});
    let known = filter_set(&[("export", export(Vec::new())), ("import", strict_import)]);
    let mut setup = setup("f", chain(&["export", "import"], &known));

    // (a) BIRD has the allowed prefixes only.
    setup.expect_bird_has(
        &["10.244.1.0/26", "10.244.1.128/26", "192.168.50.0/24"],
        "export filter",
    );
    // (b) The refused routes never reach Starling's kernel; the others do.
    setup.expect_kernel_has(&["10.244.2.0/26", "10.244.2.64/26"], "import filter");
    let connection = bgp_connection(setup.lab.namespace(0));
    assert!(!connection.is_empty(), "no BGP connection in ss");

    // (c) A looser import filter: 172.30.0.0/24 comes back (BIRD answers the ROUTE-REFRESH),
    // 172.30.1.0/24 stays out.
    let loose_import = json!({"importV4": [
        {"action": "Reject", "matchOperator": "Equal", "cidr": "172.30.1.0/24"}
    ]});
    let known = filter_set(&[("export", export(Vec::new())), ("import", loose_import)]);
    setup.set_filters(chain(&["export", "import"], &known));
    setup.expect_kernel_has(
        &["10.244.2.0/26", "10.244.2.64/26", "172.30.0.0/24"],
        "looser import filter",
    );
    // A stricter export filter withdraws the last block from BIRD.
    let stricter = export(vec![
        json!({"action": "Reject", "matchOperator": "Equal", "cidr": "10.244.1.128/26"}),
    ]);
    let loose_import = json!({"importV4": [
        {"action": "Reject", "matchOperator": "Equal", "cidr": "172.30.1.0/24"}
    ]});
    let known = filter_set(&[("export", stricter), ("import", loose_import)]);
    setup.set_filters(chain(&["export", "import"], &known));
    setup.expect_bird_has(
        &["10.244.1.0/26", "192.168.50.0/24"],
        "stricter export filter",
    );
    // A stricter import filter takes effect too, at once.
    let known = filter_set(&[
        ("export", export(Vec::new())),
        (
            "import",
            json!({"importV4": [{"action": "Reject", "matchOperator": "In", "cidr": "10.244.2.64/26"}]}),
        ),
    ]);
    setup.set_filters(chain(&["export", "import"], &known));
    setup.expect_kernel_has(
        &["10.244.2.0/26", "172.30.0.0/24", "172.30.1.0/24"],
        "stricter import filter",
    );
    setup.expect_bird_has(
        &["10.244.1.0/26", "10.244.1.128/26", "192.168.50.0/24"],
        "export filter back",
    );
    // `interface` import rules match the interface the session runs over (eth0 here).
    for (pattern, expected) in [("*.calico", &BIRD_ROUTES[..]), ("eth*", &[][..])] {
        let known = filter_set(&[
            ("export", export(Vec::new())),
            (
                "import",
                json!({"importV4": [{"action": "Reject", "interface": pattern}]}),
            ),
        ]);
        setup.set_filters(chain(&["export", "import"], &known));
        setup.expect_kernel_has(expected, &format!("import rule interface {pattern}"));
    }
    // A borrowed workload /32 (inside the pool, outside our blocks) leaves through its pod's
    // veth: an export rule `interface: "cali*"` holds it back while the blocks, which have no
    // interface, still go. A non-matching pattern first, so its absence later means something.
    let borrowed = "10.244.3.7/32";
    let mut config = setup.starling.config.clone();
    config.originated.push(borrowed.parse().unwrap());
    config
        .originated_interfaces
        .insert(borrowed.parse().unwrap(), "cali1a2b3c4d5e6".to_string());
    setup.starling.update(config);
    let blocks = &STARLING_ROUTES[..3];
    for (pattern, with_borrowed) in [("*.calico", true), ("cali*", false)] {
        let known = filter_set(&[(
            "export",
            json!({"exportV4": [{"action": "Reject", "interface": pattern}]}),
        )]);
        setup.set_filters(chain(&["export"], &known));
        let mut expected = blocks.to_vec();
        if with_borrowed {
            expected.push(borrowed);
        }
        setup.expect_bird_has(&expected, &format!("export rule interface {pattern}"));
    }
    // All of it on the same TCP connection: no session reset.
    assert_eq!(
        bgp_connection(setup.lab.namespace(0)),
        connection,
        "the BGP connection changed: the session was reset"
    );
    assert!(setup.starling.established(setup.bird_address));
}

#[test]
fn bird_peer_naming_a_missing_filter_exchanges_nothing() {
    if !require_root("bird_peer_naming_a_missing_filter_exchanges_nothing")
        || !require_program(
            "bird_peer_naming_a_missing_filter_exchanges_nothing",
            "bird",
        )
    {
        return;
    }
    let mut setup = setup("g", chain(&["missing"], &FilterSet::new()));
    // Wait for something positive first: without filters everything flows (Calico's rules send
    // the pool blocks), so the empty results after restoring the missing filter mean something.
    setup.set_filters(FilterChain::None);
    setup.expect_bird_has(
        &["10.244.1.0/26", "10.244.1.64/26", "10.244.1.128/26"],
        "no filters",
    );
    setup.expect_kernel_has(&BIRD_ROUTES, "no filters");
    setup.set_filters(chain(&["missing"], &FilterSet::new()));
    setup.expect_bird_has(&[], "missing filter");
    setup.expect_kernel_has(&[], "missing filter");
    assert!(setup.starling.established(setup.bird_address));
}
