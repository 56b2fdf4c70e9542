//! Autodetection end to end on real interfaces, inside a test network namespace (root only):
//! getifaddrs listing, the `can-reach=` probe and `startup::run` with the system host.

#[path = "support/requirements.rs"]
mod requirements;
mod startup_support;
use requirements::require_root;

use std::process::Command;

use starling::datastore::memory::MemoryStore;
use starling::datastore::AnyDatastore;
use starling::netns;
use starling::startup::{self, Host, SystemHost};
use starling_ipam::pools::IpFamily;

fn ip(namespace: &str, args: &[&str]) {
    let output = Command::new("ip")
        .arg("-n")
        .arg(namespace)
        .args(args)
        .output()
        .expect("ip runs");
    assert!(
        output.status.success(),
        "ip -n {namespace} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A namespace with `eth5` (up, 10.1.2.3/24) and `dummy0` (excluded by name), each one end of a
/// veth pair whose other end (`veth…`, also excluded) stays in the namespace: this kernel has
/// no dummy driver.
fn namespace() -> netns::NetnsGuard {
    let guard = netns::create(&netns::unique_name("st-startup")).expect("namespace");
    let name = guard.name().to_string();
    ip(&name, &["link", "set", "lo", "up"]);
    ip(
        &name,
        &[
            "link", "add", "eth5", "type", "veth", "peer", "name", "veth5",
        ],
    );
    ip(&name, &["addr", "add", "10.1.2.3/24", "dev", "eth5"]);
    ip(&name, &["link", "set", "eth5", "up"]);
    ip(
        &name,
        &[
            "link", "add", "dummy0", "type", "veth", "peer", "name", "veth6",
        ],
    );
    ip(&name, &["addr", "add", "10.9.0.1/16", "dev", "dummy0"]);
    ip(&name, &["link", "set", "dummy0", "up"]);
    guard
}

#[test]
fn system_host_lists_interfaces_and_answers_can_reach() {
    if !require_root("system_host_lists_interfaces_and_answers_can_reach") {
        return;
    }
    let guard = namespace();
    let (interfaces, source) = netns::run_in(guard.name(), || {
        (
            SystemHost.interfaces().unwrap(),
            // connect(2) on UDP only picks a route; nothing is sent.
            SystemHost.source_address_towards("10.1.2.200", IpFamily::V4),
        )
    })
    .unwrap();
    let eth5 = interfaces.iter().find(|i| i.name == "eth5").unwrap();
    assert!(eth5.up);
    assert_eq!(eth5.addresses, vec!["10.1.2.3/24".parse().unwrap()]);
    assert!(interfaces.iter().any(|i| i.name == "dummy0"));
    assert_eq!(
        source.unwrap(),
        "10.1.2.3".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn run_autodetects_inside_the_namespace() {
    if !require_root("run_autodetects_inside_the_namespace") {
        return;
    }
    let guard = namespace();
    let directory = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let store = AnyDatastore::Memory(memory);
    let config = startup_support::config(
        directory.path(),
        &[
            ("NODENAME", "node-ns"),
            ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"),
            ("CALICO_IPV4POOL_IPIP", "Always"),
        ],
    );
    let outcome = netns::run_async_in(guard.name(), || async {
        startup::run(&config, &store).await
    })
    .unwrap()
    .unwrap();
    // first-found skips dummy0 (default exclusions) and lo.
    assert_eq!(
        outcome.node.ipv4_address.unwrap().to_string(),
        "10.1.2.3/24"
    );
    assert!(outcome.node.ipv4_ipip_tunnel_addr.is_some());
    assert_eq!(
        std::fs::read_to_string(directory.path().join("lib/calico/nodename")).unwrap(),
        "node-ns"
    );
}
