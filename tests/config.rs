//! Table tests of the calico-node compatible environment parser.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use starling::run_args::RunArgs;
use starling_model::config::{
    AddressSetting, AutodetectionMethod, Config, ConfigError, Datastore, NetworkingBackend,
    PoolCidrSource, RouterIdSetting, DEFAULT_ROUTE_PROTOCOL,
};
use starling_model::{AsNumber, EncapMode};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_env(&env(pairs))
}

#[test]
fn defaults_of_an_empty_environment() {
    let config = parse(&[]).unwrap();
    assert_eq!(config.datastore, Datastore::Kubernetes { kubeconfig: None });
    assert!(!config.wait_for_datastore);
    assert_eq!(config.ipv4, AddressSetting::Unset);
    assert_eq!(config.ipv6, AddressSetting::Unset);
    assert_eq!(config.ipv4_autodetection, AutodetectionMethod::FirstFound);
    assert_eq!(config.autodetect_poll_interval, Duration::from_secs(60));
    assert_eq!(config.as_number, None);
    assert_eq!(config.networking_backend, NetworkingBackend::Bird);
    assert_eq!(config.namespace, "kube-system");
    assert_eq!(config.route_protocol, DEFAULT_ROUTE_PROTOCOL);
    assert_eq!(
        config.control_socket,
        PathBuf::from("/var/run/calico/starling.sock")
    );
    let v4 = config.default_pools.ipv4.unwrap();
    assert_eq!(v4.cidr, PoolCidrSource::Automatic);
    assert_eq!(v4.block_size, 26);
    assert_eq!(
        (v4.ipip_mode, v4.vxlan_mode),
        (EncapMode::Never, EncapMode::Never)
    );
    assert!(v4.nat_outgoing, "IPv4 default pool masquerades by default");
    assert!(!v4.disable_bgp_export);
    assert_eq!(v4.node_selector.to_string(), "all()");
    let v6 = config.default_pools.ipv6.unwrap();
    assert_eq!(v6.block_size, 122);
    assert!(!v6.nat_outgoing);

    // Felix's defaults come through when nothing overrides them.
    let felix = starling_model::FelixConfig::resolve(None, None, &config.felix);
    assert_eq!(
        (felix.health_host.as_str(), felix.health_port),
        ("localhost", 9099)
    );
    assert_eq!(felix.prometheus_metrics_port, 9091);
    assert!(!felix.health_enabled);
}

#[test]
fn a_typical_calico_node_manifest_environment() {
    let config = parse(&[
        ("DATASTORE_TYPE", "kubernetes"),
        ("WAIT_FOR_DATASTORE", "true"),
        ("NODENAME", "worker-3"),
        ("CALICO_NETWORKING_BACKEND", "bird"),
        ("CLUSTER_TYPE", "k8s,bgp"),
        ("IP", "autodetect"),
        ("CALICO_IPV4POOL_IPIP", "Always"),
        ("CALICO_IPV4POOL_VXLAN", "Never"),
        ("CALICO_IPV6POOL_VXLAN", "Never"),
        ("FELIX_IPINIPMTU", "0"),
        ("FELIX_VXLANMTU", "0"),
        ("FELIX_DEFAULTENDPOINTTOHOSTACTION", "ACCEPT"),
        ("FELIX_IPV6SUPPORT", "false"),
        ("FELIX_HEALTHENABLED", "true"),
        ("CALICO_DISABLE_FILE_LOGGING", "true"),
    ])
    .unwrap();
    assert!(config.wait_for_datastore);
    assert_eq!(config.node_name.resolve(None, "ignored"), "worker-3");
    assert_eq!(config.cluster_type, ["k8s", "bgp"]);
    assert_eq!(config.ipv4, AddressSetting::Autodetect);
    assert_eq!(
        config.default_pools.ipv4.unwrap().ipip_mode,
        EncapMode::Always
    );
    assert_eq!(config.felix.health_enabled, Some(true));
    assert_eq!(config.felix.ipv6_support, Some(false));
    assert_eq!(config.felix.ipip_mtu, Some(0));
}

#[test]
fn node_name_precedence() {
    let config = parse(&[("HOSTNAME", "Worker-9")]).unwrap();
    assert_eq!(
        config.node_name.resolve(Some("from-file\n"), "os"),
        "from-file"
    );
    assert_eq!(
        config.node_name.resolve(Some("  "), "os"),
        "worker-9",
        "HOSTNAME lowercased"
    );
    assert_eq!(
        parse(&[]).unwrap().node_name.resolve(None, "OS-Host"),
        "os-host"
    );
    let config = parse(&[
        ("NODENAME", "explicit"),
        ("CALICO_NODENAME_FILE", "/tmp/nodename"),
    ])
    .unwrap();
    assert_eq!(
        config.node_name.resolve(Some("from-file"), "os"),
        "explicit"
    );
    assert_eq!(
        config.node_name.nodename_file,
        PathBuf::from("/tmp/nodename")
    );
}

#[test]
fn valid_values() {
    let config = parse(&[
        ("DATASTORE_TYPE", "etcdv3"),
        (
            "ETCD_ENDPOINTS",
            "https://10.0.0.1:2379, https://10.0.0.2:2379",
        ),
        ("ETCD_CA_CERT_FILE", "/etc/etcd/ca.pem"),
        ("ETCD_CERT_FILE", "/etc/etcd/cert.pem"),
        ("ETCD_KEY_FILE", "/etc/etcd/key.pem"),
        ("IP", "10.0.0.5/24"),
        ("IP6", "2001:db8::5"),
        ("IP_AUTODETECTION_METHOD", "interface=eth.*, ens.*"),
        ("IP6_AUTODETECTION_METHOD", "cidr=2001:db8::/32"),
        ("AUTODETECT_POLL_INTERVAL", "5m"),
        ("DISABLE_NODE_IP_CHECK", "TRUE"),
        ("AS", "1.10"),
        ("CALICO_ROUTER_ID", "hash"),
        ("NO_DEFAULT_POOLS", "false"),
        ("CALICO_IPV4POOL_CIDR", "10.244.0.1/16"),
        ("CALICO_IPV4POOL_BLOCK_SIZE", "24"),
        ("CALICO_IPV4POOL_VXLAN", "cross-subnet"),
        ("CALICO_IPV4POOL_NAT_OUTGOING", "No"),
        ("CALICO_IPV4POOL_NODE_SELECTOR", "rack == 'a'"),
        ("CALICO_IPV4POOL_DISABLE_BGP_EXPORT", "yes"),
        ("CALICO_IPV6POOL_CIDR", "none"),
        ("NAMESPACE", "calico-system"),
        ("FELIX_HEALTHHOST", "0.0.0.0"),
        ("FELIX_HEALTHPORT", "9199"),
        ("FELIX_PROMETHEUSMETRICSENABLED", "yes"),
        ("FELIX_PROMETHEUSMETRICSPORT", "9191"),
        ("FELIX_VXLANMTU", "1410"),
        ("FELIX_VXLANMTUV6", "1390"),
        ("FELIX_VXLANPORT", "8472"),
        ("FELIX_VXLANVNI", "4097"),
        ("FELIX_INTERFACEPREFIX", "cali,tap"),
        ("FELIX_ROUTEREFRESHINTERVAL", "45"),
        ("STARLING_ROUTE_PROTOCOL", "200"),
        ("STARLING_CONTROL_SOCKET", "/run/s.sock"),
    ])
    .unwrap();
    assert_eq!(
        config.datastore,
        Datastore::Etcd {
            endpoints: vec![
                "https://10.0.0.1:2379".into(),
                "https://10.0.0.2:2379".into()
            ],
            ca_cert_file: Some("/etc/etcd/ca.pem".into()),
            cert_file: Some("/etc/etcd/cert.pem".into()),
            key_file: Some("/etc/etcd/key.pem".into()),
            kubeconfig: None,
        }
    );
    assert_eq!(
        config.ipv4,
        AddressSetting::Fixed {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
            prefix: Some(24)
        }
    );
    assert_eq!(
        config.ipv6,
        AddressSetting::Fixed {
            address: "2001:db8::5".parse().unwrap(),
            prefix: None
        }
    );
    assert_eq!(
        config.ipv4_autodetection,
        AutodetectionMethod::Interface(vec!["eth.*".into(), "ens.*".into()])
    );
    assert_eq!(
        config.ipv6_autodetection,
        AutodetectionMethod::Cidr(vec!["2001:db8::/32".parse().unwrap()])
    );
    assert_eq!(config.autodetect_poll_interval, Duration::from_secs(300));
    assert!(config.disable_node_ip_check);
    assert_eq!(config.as_number, Some(AsNumber(65546)));
    assert_eq!(config.router_id, Some(RouterIdSetting::Hash));
    let v4 = config.default_pools.ipv4.unwrap();
    assert_eq!(
        v4.cidr,
        PoolCidrSource::Explicit("10.244.0.0/16".parse().unwrap()),
        "masked as Calico does"
    );
    assert_eq!(v4.block_size, 24);
    assert_eq!(v4.vxlan_mode, EncapMode::CrossSubnet);
    assert!(!v4.nat_outgoing);
    assert!(v4.disable_bgp_export);
    assert_eq!(v4.node_selector.to_string(), "rack == \"a\"");
    assert_eq!(
        config.default_pools.ipv6, None,
        "CIDR none skips the family"
    );
    assert_eq!(config.namespace, "calico-system");
    let felix = &config.felix;
    assert_eq!(felix.health_host.as_deref(), Some("0.0.0.0"));
    assert_eq!(felix.health_port, Some(9199));
    assert_eq!(felix.prometheus_metrics_enabled, Some(true));
    assert_eq!(felix.prometheus_metrics_port, Some(9191));
    assert_eq!(
        (felix.vxlan_mtu, felix.vxlan_mtu_v6),
        (Some(1410), Some(1390))
    );
    assert_eq!(
        (felix.vxlan_port, felix.vxlan_vni),
        (Some(8472), Some(4097))
    );
    assert_eq!(
        felix.interface_prefixes,
        Some(vec!["cali".into(), "tap".into()])
    );
    assert_eq!(felix.route_refresh_interval, Some(Duration::from_secs(45)));
    assert_eq!(config.route_protocol, 200);
    assert_eq!(config.control_socket, PathBuf::from("/run/s.sock"));
}

#[test]
fn autodetection_methods() {
    let cases: [(&str, AutodetectionMethod); 7] = [
        ("", AutodetectionMethod::FirstFound),
        ("first-found", AutodetectionMethod::FirstFound),
        (
            "kubernetes-internal-ip",
            AutodetectionMethod::KubernetesInternalIp,
        ),
        (
            "can-reach=8.8.8.8",
            AutodetectionMethod::CanReach("8.8.8.8".into()),
        ),
        (
            "can-reach=www.example.com",
            AutodetectionMethod::CanReach("www.example.com".into()),
        ),
        (
            "skip-interface=docker.*,br-.*",
            AutodetectionMethod::SkipInterface(vec!["docker.*".into(), "br-.*".into()]),
        ),
        (
            "cidr=10.0.0.0/8, 192.168.1.0/24",
            AutodetectionMethod::Cidr(vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.1.0/24".parse().unwrap(),
            ]),
        ),
    ];
    for (text, expected) in cases {
        let config = parse(&[("IP_AUTODETECTION_METHOD", text)]).unwrap();
        assert_eq!(config.ipv4_autodetection, expected, "{text:?}");
    }
}

#[test]
fn legacy_calico_networking_false_means_backend_none() {
    assert_eq!(
        parse(&[("CALICO_NETWORKING", "false")])
            .unwrap()
            .networking_backend,
        NetworkingBackend::None
    );
    assert_eq!(
        parse(&[
            ("CALICO_NETWORKING_BACKEND", "vxlan"),
            ("CALICO_NETWORKING", "false")
        ])
        .unwrap()
        .networking_backend,
        NetworkingBackend::Vxlan
    );
}

#[test]
fn no_default_pools() {
    let config = parse(&[("NO_DEFAULT_POOLS", "true")]).unwrap();
    assert_eq!(
        (config.default_pools.ipv4, config.default_pools.ipv6),
        (None, None)
    );
}

#[test]
fn flags_override_the_environment() {
    let mut variables = env(&[
        ("IP", "autodetect"),
        ("AS", "65000"),
        ("NODENAME", "env-name"),
    ]);
    let flags = RunArgs {
        ip: Some("10.1.2.3/24".into()),
        as_number: Some("65001".into()),
        route_protocol: Some("90".into()),
        kubeconfig: Some("/etc/kube.conf".into()),
        ..RunArgs::default()
    };
    flags.overlay(&mut variables);
    let config = Config::from_env(&variables).unwrap();
    assert_eq!(config.as_number, Some(AsNumber(65001)));
    assert_eq!(config.route_protocol, 90);
    assert_eq!(
        config.node_name.resolve(None, "os"),
        "env-name",
        "unset flags leave the variable"
    );
    assert_eq!(
        config.datastore,
        Datastore::Kubernetes {
            kubeconfig: Some("/etc/kube.conf".into())
        }
    );
    assert!(matches!(
        config.ipv4,
        AddressSetting::Fixed {
            prefix: Some(24),
            ..
        }
    ));
}

#[test]
fn starling_run_reports_a_bad_variable_and_fails() {
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("run")
        .env("CALICO_IPV4POOL_BLOCK_SIZE", "33")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"CALICO_IPV4POOL_BLOCK_SIZE="33": block size must be between 20 and 32"#),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["run", "--as", "not-an-as"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("AS=\"not-an-as\""));
}

#[test]
fn starling_crds_prints_every_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout, starling::crds::all_yaml().unwrap());
    assert!(stdout.contains("name: ippools.crd.projectcalico.org"));

    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["crds", "--write"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let written =
        std::fs::read_to_string(dir.path().join("crd.projectcalico.org_bgppeers.yaml")).unwrap();
    assert!(written.contains("kind: BGPPeer"));
}
