//! Every unusable environment value is rejected with an error naming its variable.

use std::collections::BTreeMap;

use starling_model::config::{Config, ConfigError};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_env(&env(pairs))
}

type BadCase = (
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

#[test]
fn bad_values_name_their_variable() {
    // (environment, variable the error must name, words its reason must contain)
    let cases: Vec<BadCase> = vec![
        (
            vec![("DATASTORE_TYPE", "consul")],
            "DATASTORE_TYPE",
            "kubernetes or etcdv3",
        ),
        (
            vec![("DATASTORE_TYPE", "etcdv3")],
            "ETCD_ENDPOINTS",
            "required",
        ),
        (
            vec![
                ("DATASTORE_TYPE", "etcdv3"),
                ("ETCD_ENDPOINTS", "10.0.0.1:2379"),
            ],
            "ETCD_ENDPOINTS",
            "http",
        ),
        (
            vec![
                ("DATASTORE_TYPE", "etcdv3"),
                ("ETCD_ENDPOINTS", "http://e:2379"),
                ("ETCD_CERT_FILE", "/c"),
            ],
            "ETCD_KEY_FILE",
            "together",
        ),
        (vec![("IP", "10.0.0.300")], "IP", "expected autodetect"),
        (vec![("IP", "2001:db8::1")], "IP", "not an IPv4"),
        (vec![("IP6", "10.0.0.1")], "IP6", "not an IPv6"),
        (
            vec![("IP_AUTODETECTION_METHOD", "fastest")],
            "IP_AUTODETECTION_METHOD",
            "first-found",
        ),
        (
            vec![("IP_AUTODETECTION_METHOD", "interface=")],
            "IP_AUTODETECTION_METHOD",
            "needs",
        ),
        (
            vec![("IP6_AUTODETECTION_METHOD", "cidr=fd00::/129")],
            "IP6_AUTODETECTION_METHOD",
            "not a CIDR",
        ),
        (
            vec![("IP_AUTODETECTION_METHOD", "can-reach=")],
            "IP_AUTODETECTION_METHOD",
            "needs",
        ),
        (
            vec![("AUTODETECT_POLL_INTERVAL", "60")],
            "AUTODETECT_POLL_INTERVAL",
            "duration",
        ),
        (vec![("AS", "65536.1")], "AS", "AS number"),
        (vec![("AS", "-5")], "AS", "AS number"),
        (
            vec![("CALICO_ROUTER_ID", "2001:db8::1")],
            "CALICO_ROUTER_ID",
            "IPv4",
        ),
        (
            vec![("CALICO_NETWORKING_BACKEND", "gobgp")],
            "CALICO_NETWORKING_BACKEND",
            "bird, vxlan or none",
        ),
        (
            vec![("CALICO_IPV4POOL_BLOCK_SIZE", "33")],
            "CALICO_IPV4POOL_BLOCK_SIZE",
            "between 20 and 32",
        ),
        (
            vec![("CALICO_IPV4POOL_BLOCK_SIZE", "big")],
            "CALICO_IPV4POOL_BLOCK_SIZE",
            "between 20 and 32",
        ),
        (
            vec![("CALICO_IPV6POOL_BLOCK_SIZE", "112")],
            "CALICO_IPV6POOL_BLOCK_SIZE",
            "between 116 and 128",
        ),
        (
            vec![("CALICO_IPV4POOL_CIDR", "10.0.0.0")],
            "CALICO_IPV4POOL_CIDR",
            "CIDR",
        ),
        (
            vec![("CALICO_IPV4POOL_CIDR", "fd00::/48")],
            "CALICO_IPV4POOL_CIDR",
            "not an IPv4",
        ),
        (
            vec![("CALICO_IPV6POOL_CIDR", "10.0.0.0/8")],
            "CALICO_IPV6POOL_CIDR",
            "not an IPv6",
        ),
        (
            vec![("CALICO_IPV4POOL_CIDR", "169.254.0.0/16")],
            "CALICO_IPV4POOL_CIDR",
            "link-local",
        ),
        (
            vec![("CALICO_IPV4POOL_CIDR", "10.0.0.0/28")],
            "CALICO_IPV4POOL_CIDR",
            "at least one block",
        ),
        (
            vec![("CALICO_IPV4POOL_IPIP", "sometimes")],
            "CALICO_IPV4POOL_IPIP",
            "CrossSubnet",
        ),
        (
            vec![("CALICO_IPV6POOL_VXLAN", "on")],
            "CALICO_IPV6POOL_VXLAN",
            "Always",
        ),
        (
            vec![
                ("CALICO_IPV4POOL_IPIP", "Always"),
                ("CALICO_IPV4POOL_VXLAN", "Always"),
            ],
            "CALICO_IPV4POOL_VXLAN",
            "together with CALICO_IPV4POOL_IPIP",
        ),
        (
            vec![("CALICO_IPV4POOL_NODE_SELECTOR", "global()")],
            "CALICO_IPV4POOL_NODE_SELECTOR",
            "global()",
        ),
        (
            vec![
                ("NO_DEFAULT_POOLS", "true"),
                ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"),
            ],
            "NO_DEFAULT_POOLS",
            "CALICO_IPV4POOL_CIDR",
        ),
        (
            vec![
                ("NO_DEFAULT_POOLS", "True"),
                ("CALICO_IPV6POOL_CIDR", "fd00::/48"),
            ],
            "NO_DEFAULT_POOLS",
            "CALICO_IPV6POOL_CIDR",
        ),
        (
            vec![("FELIX_HEALTHENABLED", "maybe")],
            "FELIX_HEALTHENABLED",
            "true or false",
        ),
        (
            vec![("FELIX_HEALTHPORT", "0")],
            "FELIX_HEALTHPORT",
            "between 1 and 65535",
        ),
        (
            vec![("FELIX_PROMETHEUSMETRICSPORT", "65536")],
            "FELIX_PROMETHEUSMETRICSPORT",
            "between 1 and 65535",
        ),
        (vec![("FELIX_IPINIPMTU", "-1")], "FELIX_IPINIPMTU", "MTU"),
        (vec![("FELIX_VXLANMTU", "1500b")], "FELIX_VXLANMTU", "MTU"),
        (vec![("FELIX_VXLANVNI", "0")], "FELIX_VXLANVNI", "VNI"),
        (
            vec![("FELIX_IPV6SUPPORT", "sure")],
            "FELIX_IPV6SUPPORT",
            "true or false",
        ),
        (
            vec![("FELIX_INTERFACEPREFIX", ",")],
            "FELIX_INTERFACEPREFIX",
            "prefix",
        ),
        (
            vec![("FELIX_ROUTEREFRESHINTERVAL", "-3")],
            "FELIX_ROUTEREFRESHINTERVAL",
            "non-negative",
        ),
        (
            vec![("FELIX_ROUTEREFRESHINTERVAL", "often")],
            "FELIX_ROUTEREFRESHINTERVAL",
            "duration",
        ),
        (
            vec![("STARLING_ROUTE_PROTOCOL", "80")],
            "STARLING_ROUTE_PROTOCOL",
            "Felix",
        ),
        (
            vec![("STARLING_ROUTE_PROTOCOL", "12")],
            "STARLING_ROUTE_PROTOCOL",
            "BIRD",
        ),
        (
            vec![("STARLING_ROUTE_PROTOCOL", "3")],
            "STARLING_ROUTE_PROTOCOL",
            "kernel",
        ),
        (
            vec![("STARLING_ROUTE_PROTOCOL", "256")],
            "STARLING_ROUTE_PROTOCOL",
            "between 1 and 255",
        ),
    ];
    let mut failures = Vec::new();
    for (pairs, variable, reason) in cases {
        match parse(&pairs) {
            Ok(_) => failures.push(format!("{pairs:?}: accepted")),
            Err(error) => {
                let text = error.to_string();
                let value = env(&pairs).get(variable).cloned().unwrap_or_default();
                if error.variable != variable
                    || !text.starts_with(&format!("{variable}={value:?}: "))
                    || !error.reason.contains(reason)
                {
                    failures.push(format!(
                        "{pairs:?}: expected {variable} / {reason:?}, got {text:?}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn documented_error_form() {
    let error = parse(&[("CALICO_IPV4POOL_BLOCK_SIZE", "33")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"CALICO_IPV4POOL_BLOCK_SIZE="33": block size must be between 20 and 32"#
    );
}
