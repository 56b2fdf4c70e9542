//! The `starling` binary run as a CNI plugin, as a runtime runs it: environment and stdin, inside
//! a node namespace, with pods in namespaces of their own and the in-test IPAM server.

mod cni_support;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use cni_support::*;

fn add_pod<'a>(
    node: &Netns,
    server: &IpamServer,
    pod: &'a Netns,
    name: &str,
    container: &'a str,
) -> PluginOutput {
    invoke(
        node,
        PLUGIN,
        &Invocation {
            command: "ADD",
            container_id: container,
            netns: Some(&pod.path()),
            interface: "eth0",
            cni_args: Some(kubelet_args("default", name, container)),
            socket: &server.socket,
            stdin: network_config("1.0.0"),
        },
    )
}

fn delete_pod(
    node: &Netns,
    server: &IpamServer,
    pod: Option<&Netns>,
    name: &str,
    container: &str,
) -> PluginOutput {
    let path = pod.map(Netns::path);
    invoke(
        node,
        PLUGIN,
        &Invocation {
            command: "DEL",
            container_id: container,
            netns: path.as_deref(),
            interface: "eth0",
            cni_args: Some(kubelet_args("default", name, container)),
            socket: &server.socket,
            stdin: network_config("1.0.0"),
        },
    )
}

fn check_pod(
    node: &Netns,
    server: &IpamServer,
    pod: &Netns,
    name: &str,
    container: &str,
    previous: &serde_json::Value,
) -> PluginOutput {
    let mut config: serde_json::Value = serde_json::from_str(&network_config("1.0.0")).unwrap();
    config["prevResult"] = previous.clone();
    invoke(
        node,
        PLUGIN,
        &Invocation {
            command: "CHECK",
            container_id: container,
            netns: Some(&pod.path()),
            interface: "eth0",
            cni_args: Some(kubelet_args("default", name, container)),
            socket: &server.socket,
            stdin: config.to_string(),
        },
    )
}

/// The required fields of a CNI 1.0.0 ADD result.
fn assert_valid_result(result: &serde_json::Value, sandbox: &str) -> String {
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    let interfaces = result["interfaces"].as_array().expect("interfaces");
    let sandbox_index = interfaces
        .iter()
        .position(|interface| interface["sandbox"] == sandbox)
        .unwrap_or_else(|| panic!("no interface with sandbox {sandbox}: {result}"));
    assert_eq!(interfaces[sandbox_index]["name"], "eth0");
    assert!(interfaces
        .iter()
        .all(|interface| interface["name"].is_string()));
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    assert_eq!(ips[0]["interface"], sandbox_index);
    assert!(
        ips[0].get("version").is_none(),
        "1.0.0 has no ips[].version"
    );
    let address = ips[0]["address"].as_str().expect("address").to_string();
    assert!(address.ends_with("/32"), "{address}");
    assert!(result["routes"].is_array(), "{result}");
    assert!(result["dns"].is_object(), "{result}");
    address
}

#[test]
fn add_check_delete_and_ping() {
    if !require_root("add_check_delete_and_ping") {
        return;
    }
    let node = node_namespace();
    let server = IpamServer::start("10.66.0.0/24");
    let pod_a = Netns::new("pod");
    let pod_b = Netns::new("pod");

    let added = add_pod(&node, &server, &pod_a, "web-a", "container-a");
    assert!(
        added.success,
        "ADD failed: {} {}",
        added.stdout, added.stderr
    );
    let result = added.json();
    let address_a = assert_valid_result(&result, &pod_a.path().display().to_string());
    let ip_a = address_a.trim_end_matches("/32");

    // The pod: its address, the gateway route and the default route, MTU from the config.
    let pod_addresses = pod_a.ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(pod_addresses.contains(&address_a), "{pod_addresses}");
    assert!(pod_addresses.contains("mtu 1400"), "{pod_addresses}");
    let pod_routes = pod_a.ip(&["-4", "route", "show"]);
    assert!(
        pod_routes.contains("default via 169.254.1.1 dev eth0"),
        "{pod_routes}"
    );
    assert!(pod_routes.contains("169.254.1.1 dev eth0"), "{pod_routes}");

    // The node: the veth by name with the fixed MAC, and the /32 route with Starling's protocol.
    let veth_a = expected_veth("default", "web-a");
    let link = node.ip(&["link", "show", &veth_a]);
    assert!(link.contains("ee:ee:ee:ee:ee:ee"), "{link}");
    assert!(link.contains("state UP") || link.contains(",UP"), "{link}");
    let host_route = node.ip(&["route", "show", &address_a, "proto", "81"]);
    assert!(
        host_route.contains(&format!("dev {veth_a}")),
        "{host_route}"
    );
    assert!(host_route.contains("scope link"), "{host_route}");
    for (sysctl, expected) in [
        (format!("ipv4/conf/{veth_a}/proxy_arp"), "1"),
        (format!("ipv4/conf/{veth_a}/forwarding"), "1"),
        (format!("ipv4/conf/{veth_a}/route_localnet"), "1"),
        (format!("ipv4/neigh/{veth_a}/proxy_delay"), "0"),
        (format!("ipv6/conf/{veth_a}/accept_ra"), "0"),
    ] {
        let output = node.exec("cat", &[&format!("/proc/sys/net/{sysctl}")]);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            expected,
            "{sysctl}"
        );
    }
    assert_eq!(result["interfaces"][0]["name"], veth_a.as_str());
    assert_eq!(result["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");

    let added_b = add_pod(&node, &server, &pod_b, "web-b", "container-b");
    assert!(added_b.success, "{} {}", added_b.stdout, added_b.stderr);
    let address_b = assert_valid_result(&added_b.json(), &pod_b.path().display().to_string());
    assert_ne!(address_a, address_b);
    let ip_b = address_b.trim_end_matches("/32");

    assert!(pod_a.ping(NODE_ADDRESS), "pod a cannot ping its node");
    assert!(pod_a.ping(ip_b), "pod a cannot ping pod b");
    assert!(pod_b.ping(ip_a), "pod b cannot ping pod a");

    // CHECK passes as ADD left things, and fails once the veth is gone.
    let checked = check_pod(&node, &server, &pod_a, "web-a", "container-a", &result);
    assert!(
        checked.success,
        "CHECK failed: {} {}",
        checked.stdout, checked.stderr
    );
    assert!(checked.stdout.is_empty(), "{}", checked.stdout);

    node.ip(&["link", "del", &veth_a]);
    let broken = check_pod(&node, &server, &pod_a, "web-a", "container-a", &result);
    assert!(!broken.success);
    let error = broken.json();
    assert_eq!(error["code"], 104, "{error}");
    assert!(error["msg"].as_str().unwrap().contains(&veth_a), "{error}");

    // DEL removes everything and releases; a second DEL (namespace gone too) succeeds.
    let deleted = delete_pod(&node, &server, Some(&pod_a), "web-a", "container-a");
    assert!(deleted.success, "{} {}", deleted.stdout, deleted.stderr);
    let deleted_b = delete_pod(&node, &server, Some(&pod_b), "web-b", "container-b");
    assert!(
        deleted_b.success,
        "{} {}",
        deleted_b.stdout, deleted_b.stderr
    );
    assert!(server.allocator.allocations().is_empty());
    let veth_b = expected_veth("default", "web-b");
    assert!(!link_exists(&node, &veth_b), "{veth_b} is still there");
    assert!(!pod_b.ip(&["link", "show"]).contains("eth0"));
    let routes = node.ip(&["route", "show", "proto", "81"]);
    assert!(routes.trim().is_empty(), "{routes}");
    drop(pod_b);
    let again = delete_pod(&node, &server, None, "web-b", "container-b");
    assert!(again.success, "{} {}", again.stdout, again.stderr);
}

#[test]
fn bad_input_is_a_cni_error_and_allocates_nothing() {
    if !require_root("bad_input_is_a_cni_error_and_allocates_nothing") {
        return;
    }
    let node = node_namespace();
    let server = IpamServer::start("10.67.0.0/24");
    let pod = Netns::new("pod");
    let path = pod.path();
    let base = Invocation {
        command: "ADD",
        container_id: "container-x",
        netns: Some(&path),
        interface: "eth0",
        cni_args: Some(kubelet_args("default", "x", "container-x")),
        socket: &server.socket,
        stdin: network_config("1.0.0"),
    };

    let garbage = invoke(
        &node,
        PLUGIN,
        &Invocation {
            stdin: "this is not json".into(),
            ..base_clone(&base)
        },
    );
    assert!(!garbage.success);
    assert_eq!(garbage.json()["code"], 6, "{}", garbage.stdout);
    assert!(garbage.json()["msg"].is_string());

    let no_pod_name = invoke(
        &node,
        PLUGIN,
        &Invocation {
            cni_args: Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=default".into()),
            ..base_clone(&base)
        },
    );
    assert!(!no_pod_name.success);
    let error = no_pod_name.json();
    assert_eq!(error["code"], 4, "{error}");
    assert!(
        error["msg"].as_str().unwrap().contains("K8S_POD_NAME"),
        "{error}"
    );

    let unknown_version = invoke(
        &node,
        PLUGIN,
        &Invocation {
            stdin: network_config("9.0.0"),
            ..base_clone(&base)
        },
    );
    assert!(!unknown_version.success);
    assert_eq!(
        unknown_version.json()["code"],
        1,
        "{}",
        unknown_version.stdout
    );

    assert_eq!(server.assign_count(), 0);
    assert!(server.allocator.allocations().is_empty());

    // Wiring that fails half way (the "namespace" is a regular file): allocated, then rolled back.
    let not_a_namespace = tempfile::NamedTempFile::new().unwrap();
    let failed = invoke(
        &node,
        PLUGIN,
        &Invocation {
            netns: Some(not_a_namespace.path()),
            ..base_clone(&base)
        },
    );
    assert!(!failed.success);
    let error = failed.json();
    assert_eq!(error["code"], 100, "{error}");
    assert_eq!(
        server.assign_count(),
        1,
        "the failure must come after the assignment"
    );
    assert!(
        server.allocator.allocations().is_empty(),
        "address left allocated: {:?}",
        server.allocator.allocations()
    );
    assert!(!link_exists(&node, &expected_veth("default", "x")));
    let links = node.ip(&["link", "show"]);
    assert!(!links.contains("cali"), "{links}");
}

fn base_clone<'a>(base: &Invocation<'a>) -> Invocation<'a> {
    Invocation {
        command: base.command,
        container_id: base.container_id,
        netns: base.netns,
        interface: base.interface,
        cni_args: base.cni_args.clone(),
        socket: base.socket,
        stdin: base.stdin.clone(),
    }
}

#[test]
fn missing_daemon_version_and_status() {
    if !require_root("missing_daemon_version_and_status") {
        return;
    }
    let node = node_namespace();
    let pod = Netns::new("pod");
    let directory = tempfile::tempdir().unwrap();
    let socket = directory.path().join("no-daemon.sock");
    let path = pod.path();
    let add = Invocation {
        command: "ADD",
        container_id: "container-y",
        netns: Some(&path),
        interface: "eth0",
        cni_args: Some(kubelet_args("default", "y", "container-y")),
        socket: &socket,
        stdin: network_config("1.0.0"),
    };
    let missing = invoke(&node, PLUGIN, &add);
    assert!(!missing.success);
    let error = missing.json();
    assert_eq!(error["code"], 11, "{error}");
    let message = error["msg"].as_str().unwrap();
    assert!(message.contains("not running"), "{message}");
    assert!(message.contains(&socket.display().to_string()), "{message}");
    assert!(!node.ip(&["link", "show"]).contains("cali"));

    let status = invoke(
        &node,
        PLUGIN,
        &Invocation {
            command: "STATUS",
            stdin: network_config("1.1.0"),
            ..base_clone(&add)
        },
    );
    assert!(!status.success);
    assert_eq!(status.json()["code"], 50, "{}", status.stdout);

    let server = IpamServer::start("10.68.0.0/24");
    let ready = invoke(
        &node,
        PLUGIN,
        &Invocation {
            command: "STATUS",
            socket: &server.socket,
            stdin: network_config("1.1.0"),
            ..base_clone(&add)
        },
    );
    assert!(ready.success, "{} {}", ready.stdout, ready.stderr);

    let version = invoke(
        &node,
        PLUGIN,
        &Invocation {
            command: "VERSION",
            stdin: r#"{"cniVersion":"0.4.0"}"#.into(),
            ..base_clone(&add)
        },
    );
    assert!(version.success);
    let answer = version.json();
    assert_eq!(answer["cniVersion"], "0.4.0");
    for expected in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            answer["supportedVersions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|version| version == expected),
            "{answer}"
        );
    }
}

#[test]
fn deleting_an_old_sandbox_spares_the_new_one() {
    if !require_root("deleting_an_old_sandbox_spares_the_new_one") {
        return;
    }
    let node = node_namespace();
    let server = IpamServer::start("10.69.0.0/24");
    let old_sandbox = Netns::new("pod");
    let new_sandbox = Netns::new("pod");
    let old = add_pod(&node, &server, &old_sandbox, "restarted", "container-old");
    assert!(old.success, "{} {}", old.stdout, old.stderr);
    // The new sandbox takes over the host-side name (the old veth is stale by then).
    let new = add_pod(&node, &server, &new_sandbox, "restarted", "container-new");
    assert!(new.success, "{} {}", new.stdout, new.stderr);
    let new_address = new.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();

    let deleted = delete_pod(
        &node,
        &server,
        Some(&old_sandbox),
        "restarted",
        "container-old",
    );
    assert!(deleted.success, "{} {}", deleted.stdout, deleted.stderr);
    let allocations = server.allocator.allocations();
    assert_eq!(
        allocations.values().collect::<Vec<_>>(),
        ["k8s-pod-network.container-new"]
    );
    assert!(link_exists(&node, &expected_veth("default", "restarted")));
    let host_route = node.ip(&["route", "show", &new_address]);
    assert!(host_route.contains("dev cali"), "{host_route}");
    assert!(new_sandbox.ping(NODE_ADDRESS));
}

#[test]
fn dual_stack_pod() {
    if !require_root("dual_stack_pod") {
        return;
    }
    let node = node_namespace();
    // IPv6 forwarding is global (net.ipv6.conf.all.forwarding), which the daemon sets on a node.
    node.exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
    let server = IpamServer::start_with(
        starling::cni::fake_ipam::CountingAllocator::new(
            "10.72.0.0/24".parse().unwrap(),
            Some("fd00:72::/120".parse().unwrap()),
        )
        .with_pod_mac("dual-a", "02:42:ac:11:00:07"),
    );
    let pod_a = Netns::new("pod");
    let pod_b = Netns::new("pod");
    let config = r#"{"cniVersion":"0.4.0","name":"k8s-pod-network","type":"starling","mtu":1400,"ipam":{"type":"calico-ipam","assign_ipv4":"true","assign_ipv6":"true"}}"#;
    let mut addresses = Vec::new();
    for (pod, name) in [(&pod_a, "dual-a"), (&pod_b, "dual-b")] {
        let path = pod.path();
        let container = format!("container-{name}");
        let added = invoke(
            &node,
            PLUGIN,
            &Invocation {
                command: "ADD",
                container_id: &container,
                netns: Some(&path),
                interface: "eth0",
                cni_args: Some(kubelet_args("default", name, &container)),
                socket: &server.socket,
                stdin: config.into(),
            },
        );
        assert!(added.success, "{} {}", added.stdout, added.stderr);
        let result = added.json();
        assert_eq!(result["cniVersion"], "0.4.0");
        let ips = result["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 2, "{result}");
        assert_eq!(ips[0]["version"], "4", "0.4.0 results name the IP version");
        assert_eq!(ips[1]["version"], "6");
        assert!(ips[1]["address"].as_str().unwrap().ends_with("/128"));
        let routes = pod.ip(&["-6", "route", "show", "default"]);
        assert!(
            routes.contains("via fe80::ecee:eeff:feee:eeee dev eth0"),
            "{routes}"
        );
        let pod_addresses = pod.ip(&["-6", "addr", "show", "dev", "eth0"]);
        assert!(!pod_addresses.contains("tentative"), "{pod_addresses}");
        addresses.push(
            ips[1]["address"]
                .as_str()
                .unwrap()
                .trim_end_matches("/128")
                .to_string(),
        );
    }
    // The hwAddr the daemon passed on is the pod interface's MAC.
    let link = pod_a.ip(&["link", "show", "eth0"]);
    assert!(link.contains("02:42:ac:11:00:07"), "{link}");
    // The host side's link-local address needs its own DAD before neighbour discovery answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pod_a.ping(&addresses[1]) {
        assert!(
            std::time::Instant::now() < deadline,
            "pod a cannot reach pod b over IPv6"
        );
    }
    assert!(pod_b.ping(&addresses[0]));
}
