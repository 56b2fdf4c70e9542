//! Table tests for IP autodetection (reference §8.2): every method over fixed interface lists.

use std::net::IpAddr;

use ipnet::IpNet;
use starling::startup::autodetect::{
    default_ipv4_pool_cidr, detect, node_interfaces, plan_address, AddressPlan,
};
use starling::startup::HostInterface;
use starling_ipam::pools::IpFamily;
use starling_model::config::{parse_address_setting, parse_autodetection_method};

fn interface(name: &str, index: u32, up: bool, addresses: &[&str]) -> HostInterface {
    HostInterface {
        name: name.to_string(),
        index,
        up,
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

fn host() -> Vec<HostInterface> {
    vec![
        interface("lo", 1, true, &["127.0.0.1/8", "::1/128"]),
        interface(
            "eth0",
            2,
            true,
            &["10.0.0.5/24", "fe80::1/64", "2001:db8::5/64"],
        ),
        interface("eth1", 3, true, &["192.168.50.7/24"]),
        interface("docker0", 4, true, &["172.17.0.1/16"]),
        interface("cali12345", 5, true, &["10.244.1.1/32"]),
        interface("eth2", 6, false, &["10.9.9.9/24"]),
        interface("bond0", 7, true, &["169.254.3.3/16"]),
    ]
}

fn no_reach(_: &str, _: IpFamily) -> Result<IpAddr, String> {
    Err("unreachable in this test".to_string())
}

fn reach_via_eth0(destination: &str, family: IpFamily) -> Result<IpAddr, String> {
    assert_eq!(destination, "8.8.8.8");
    assert_eq!(family, IpFamily::V4);
    Ok("10.0.0.5".parse().unwrap())
}

#[test]
fn methods_pick_the_calico_address() {
    let internal: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap()];
    // (method, family, expected address with prefix, expected interface)
    let table: &[(&str, IpFamily, &str, &str)] = &[
        // Highest index first (calico-node walks interfaces in reverse); eth2 is down,
        // docker0/cali* are excluded, bond0 only has a link-local address.
        ("first-found", IpFamily::V4, "192.168.50.7/24", "eth1"),
        ("", IpFamily::V4, "192.168.50.7/24", "eth1"),
        ("first-found", IpFamily::V6, "2001:db8::5/64", "eth0"),
        ("interface=eth0", IpFamily::V4, "10.0.0.5/24", "eth0"),
        (
            "interface=eth9, eth[01]",
            IpFamily::V4,
            "192.168.50.7/24",
            "eth1",
        ),
        // interface= does not apply the default exclusions.
        (
            "interface=docker.*",
            IpFamily::V4,
            "172.17.0.1/16",
            "docker0",
        ),
        ("skip-interface=eth1", IpFamily::V4, "10.0.0.5/24", "eth0"),
        ("cidr=10.0.0.0/24", IpFamily::V4, "10.0.0.5/24", "eth0"),
        // cidr= applies no interface exclusions either (as in calico-node).
        (
            "cidr=10.0.0.0/8",
            IpFamily::V4,
            "10.244.1.1/32",
            "cali12345",
        ),
        (
            "cidr=10.0.0.0/24,192.168.0.0/16",
            IpFamily::V4,
            "192.168.50.7/24",
            "eth1",
        ),
        ("cidr=2001:db8::/32", IpFamily::V6, "2001:db8::5/64", "eth0"),
        (
            "kubernetes-internal-ip",
            IpFamily::V4,
            "10.0.0.5/24",
            "eth0",
        ),
        (
            "kubernetes-internal-ip",
            IpFamily::V6,
            "2001:db8::5/64",
            "eth0",
        ),
        ("can-reach=8.8.8.8", IpFamily::V4, "10.0.0.5/24", "eth0"),
    ];
    for (text, family, address, interface_name) in table {
        let method = parse_autodetection_method(text).unwrap();
        let found = detect(&method, *family, &host(), &internal, &reach_via_eth0)
            .unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(
            found.address,
            address.parse::<IpNet>().unwrap(),
            "method {text:?}"
        );
        assert_eq!(found.interface, *interface_name, "method {text:?}");
    }
}

#[test]
fn methods_that_find_nothing_say_why() {
    let table: &[(&str, IpFamily, &str)] = &[
        ("interface=wlan.*", IpFamily::V4, "no matching"),
        ("skip-interface=eth.*", IpFamily::V4, "no matching"),
        ("cidr=10.1.0.0/16", IpFamily::V4, "no matching"),
        // The only address on eth2 is on a down interface.
        ("interface=eth2", IpFamily::V4, "no matching"),
        ("interface=bond0", IpFamily::V4, "no matching"),
        ("kubernetes-internal-ip", IpFamily::V4, "no IPv4 InternalIP"),
        (
            "can-reach=192.0.2.1",
            IpFamily::V4,
            "unreachable in this test",
        ),
        ("interface=eth(", IpFamily::V4, "not a regular expression"),
    ];
    for (text, family, reason) in table {
        let method = parse_autodetection_method(text).unwrap();
        let error = detect(&method, *family, &host(), &[], &no_reach).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(reason) && message.contains(&format!("IPv{}", family.version())),
            "{text}: {message}"
        );
    }
}

#[test]
fn can_reach_source_must_be_on_an_interface() {
    let method = parse_autodetection_method("can-reach=192.0.2.1").unwrap();
    let elsewhere = |_: &str, _: IpFamily| Ok::<IpAddr, String>("10.77.0.1".parse().unwrap());
    let error = detect(&method, IpFamily::V4, &host(), &[], &elsewhere).unwrap_err();
    assert!(error.to_string().contains("10.77.0.1"), "{error}");
}

#[test]
fn kubernetes_internal_ip_without_interface_keeps_a_host_address() {
    let method = parse_autodetection_method("kubernetes-internal-ip").unwrap();
    let internal: Vec<IpAddr> = vec!["10.200.0.1".parse().unwrap()];
    let found = detect(&method, IpFamily::V4, &host(), &internal, &no_reach).unwrap();
    assert_eq!(found.address, "10.200.0.1/32".parse::<IpNet>().unwrap());
}

#[test]
fn address_settings_follow_calico_node() {
    let existing: Option<IpNet> = Some("10.0.0.5/24".parse().unwrap());
    let fixed = |text: &str| AddressPlan::Fixed(text.parse().unwrap());
    // (IP value, family, node's address, expected plan)
    let table: Vec<(&str, IpFamily, Option<IpNet>, AddressPlan)> = vec![
        ("", IpFamily::V4, None, AddressPlan::Autodetect),
        ("", IpFamily::V4, existing, AddressPlan::Keep),
        ("", IpFamily::V6, None, AddressPlan::Keep),
        (
            "autodetect",
            IpFamily::V4,
            existing,
            AddressPlan::Autodetect,
        ),
        ("autodetect", IpFamily::V6, None, AddressPlan::Autodetect),
        ("none", IpFamily::V4, existing, AddressPlan::Keep),
        ("none", IpFamily::V4, None, AddressPlan::Keep),
        // A bare address takes the prefix of the interface holding it, even a down one.
        ("192.168.50.7", IpFamily::V4, None, fixed("192.168.50.7/24")),
        ("10.9.9.9", IpFamily::V4, None, fixed("10.9.9.9/24")),
        ("2001:db8::5", IpFamily::V6, None, fixed("2001:db8::5/64")),
        // An explicit prefix wins; an address on no interface becomes a host address.
        ("10.0.0.5/16", IpFamily::V4, existing, fixed("10.0.0.5/16")),
        ("203.0.113.9", IpFamily::V4, None, fixed("203.0.113.9/32")),
    ];
    for (text, family, current, expected) in table {
        let setting = parse_address_setting(text, family == IpFamily::V4).unwrap();
        assert_eq!(
            plan_address(&setting, family, current, &host()),
            expected,
            "IP={text:?} family {family:?} existing {current:?}"
        );
    }
}

#[test]
fn node_interfaces_are_sorted_and_filtered() {
    let listed = node_interfaces(&host(), &[IpFamily::V4]);
    let names: Vec<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["bond0", "eth0", "eth1", "eth2"]);
    assert_eq!(listed[1].1, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
    let both = node_interfaces(&host(), &[IpFamily::V4, IpFamily::V6]);
    assert_eq!(both[1].1.len(), 3);
}

#[test]
fn default_ipv4_pool_avoids_host_subnets() {
    assert_eq!(
        default_ipv4_pool_cidr(&[interface("eth0", 2, true, &["10.0.0.5/24"])])
            .unwrap()
            .to_string(),
        "192.168.0.0/16"
    );
    // eth1 sits in 192.168.50.0/24, docker0 in 172.17.0.0/16.
    assert_eq!(
        default_ipv4_pool_cidr(&host()).unwrap().to_string(),
        "172.16.0.0/16"
    );
    let crowded = vec![
        interface("eth0", 2, true, &["192.168.1.1/24", "172.16.0.1/12"]),
        interface("eth1", 3, true, &["172.28.0.1/16"]),
    ];
    // 172.16.0.0/12 covers every 172.16-31 candidate.
    assert_eq!(default_ipv4_pool_cidr(&crowded), None);
}
