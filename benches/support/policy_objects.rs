//! The Calico objects of the policy benchmark, as Calico's CNI plugin and kube-controllers store
//! them in etcd (shapes as in `starling lab`): `kns.<ns>` Profiles, namespaced v3
//! NetworkPolicies in the default tier and one WorkloadEndpoint per pod, all on one node.
//!
//! The mix mirrors `starling_policy::render::synthetic`: namespaces of 50 pods; each policy lives
//! in one namespace and selects a quarter of its pods (`group`); ingress allows TCP 80-81 and a
//! named UDP port from pods of the namespace with one `app`, every third policy also TCP 443
//! from namespaces with one `team`, every fifth one CIDR, every seventh denies TCP 22; every
//! other policy has an egress rule (TCP 80 to an `app`, every fourth also UDP 53 anywhere).
//! Pods are dual-stack. Deterministic, so runs compare.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Value};
use starling::policy::inputs::InputKind;
use starling_policy::k8s::namespace_profile_object;
use starling_policy::model::{MetadataOnly, ObjectMeta};

pub const NODE: &str = "benchnode";
pub const NAMESPACES: usize = 20;
const APPS: usize = 25;
const GROUPS: usize = 4;
const TEAMS: usize = 5;

fn prefix(plural: &str) -> String {
    format!("/calico/resources/v3/projectcalico.org/{plural}/")
}

/// One stored object: its etcd key, the engine's key (`<ns>/<name>` or `<name>`), its kind.
#[derive(Debug, Clone)]
pub struct Stored {
    pub kind: InputKind,
    pub etcd_key: String,
    pub key: String,
    pub value: Value,
}

impl Stored {
    fn new(
        kind: InputKind,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        value: Value,
    ) -> Self {
        let key = match namespace {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.to_string(),
        };
        Stored {
            kind,
            etcd_key: format!("{}{key}", prefix(plural)),
            key,
            value,
        }
    }
}

fn namespace_name(index: usize) -> String {
    format!("ns{index}")
}

/// The `kns.<ns>` profile of namespace `index` (labels `team`, as kube-controllers write it).
pub fn profile(index: usize) -> Stored {
    let name = namespace_name(index);
    let labels = [
        ("kubernetes.io/metadata.name".to_string(), name.clone()),
        ("team".to_string(), format!("t{}", index % TEAMS)),
    ]
    .into();
    let namespace = MetadataOnly {
        metadata: ObjectMeta {
            name: name.clone(),
            labels,
            ..ObjectMeta::default()
        },
        ..MetadataOnly::default()
    };
    let object = namespace_profile_object(&namespace);
    let value = serde_json::to_value(&object).expect("a profile encodes");
    Stored::new(
        InputKind::Profile,
        "profiles",
        None,
        &format!("kns.{name}"),
        value,
    )
}

/// Pod `index` with its `app` label shifted by `app_shift` (0: as generated).
pub fn pod(index: usize, app_shift: usize) -> Stored {
    let namespace = namespace_name(index % NAMESPACES);
    let slot = index / NAMESPACES;
    let pod = format!("pod{index}");
    let name = format!("{NODE}-k8s-{pod}-eth0");
    let offset = u32::try_from(index + 1).expect("pod index fits u32");
    let v4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 65, 0, 0)) + offset);
    let v6 = Ipv6Addr::from(0xfd00_0065_0000_0000_0000_0000_0000_0000u128 + u128::from(offset));
    let value = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app": format!("a{}", (slot + app_shift) % APPS),
                "group": format!("g{}", slot % GROUPS),
                "projectcalico.org/namespace": namespace,
                "projectcalico.org/orchestrator": "k8s",
            },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": NODE,
            "pod": pod,
            "endpoint": "eth0",
            "interfaceName": format!("cali{index:011x}"),
            "ipNetworks": [format!("{v4}/32"), format!("{v6}/128")],
            "profiles": [format!("kns.{namespace}")],
            "ports": [
                {"name": "dns", "protocol": "UDP", "port": 53},
                {"name": "http", "protocol": "TCP", "port": 8080},
            ],
        },
    });
    Stored::new(
        InputKind::WorkloadEndpoint,
        "workloadendpoints",
        Some(&namespace),
        &name,
        value,
    )
}

/// Policy `index` (see the module comment for the mix).
pub fn policy(index: usize) -> Stored {
    let namespace = namespace_name(index % NAMESPACES);
    let round = index / NAMESPACES;
    let name = format!("default.pol{index}");
    let app = format!("app == 'a{}'", index % APPS);
    let mut ingress = vec![
        json!({"action": "Allow", "protocol": "TCP",
               "source": {"selector": app}, "destination": {"ports": ["80:81"]}}),
        json!({"action": "Allow", "protocol": "UDP",
               "source": {"selector": app}, "destination": {"ports": ["dns"]}}),
    ];
    if index % 3 == 0 {
        ingress.push(json!({"action": "Allow", "protocol": "TCP",
            "source": {"namespaceSelector": format!("team == 't{}'", index % TEAMS)},
            "destination": {"ports": [443]}}));
    }
    if index % 5 == 0 {
        ingress.push(json!({"action": "Allow", "source": {"nets": [
            format!("192.168.{}.0/24", index % 256),
            format!("fd10:{index:x}::/64"),
        ]}}));
    }
    if index % 7 == 0 {
        ingress.push(json!({"action": "Deny", "protocol": "TCP", "destination": {"ports": [22]}}));
    }
    let mut types = vec!["Ingress"];
    let mut egress = vec![];
    if index % 2 == 0 {
        types.push("Egress");
        egress.push(json!({"action": "Allow", "protocol": "TCP",
            "destination": {"selector": app, "ports": [80]}}));
        if index % 4 == 0 {
            egress.push(json!({"action": "Allow", "protocol": "UDP",
                "destination": {"ports": [53]}}));
        }
    }
    let value = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tier": "default",
            "order": round,
            "selector": format!("group == 'g{}'", (GROUPS - round % GROUPS) % GROUPS),
            "types": types,
            "ingress": ingress,
            "egress": egress,
        },
    });
    Stored::new(
        InputKind::NetworkPolicy,
        "networkpolicies",
        Some(&namespace),
        &name,
        value,
    )
}

/// Policies of namespace `n` select apps `k` with `k ≡ n (mod 5)`, 5 = gcd(20, 25) (policy `p` is in namespace
/// `p % 20` and names app `p % 25`); shifting a pod's app by this keeps it among those.
pub const APP_SHIFT: usize = 5;

/// Pods whose app some policy of their namespace selects: moving one by [`APP_SHIFT`] takes it
/// out of one selector set and into another.
pub fn label_movers(pods: usize) -> Vec<usize> {
    (0..pods)
        .filter(|index| (index / NAMESPACES) % APP_SHIFT == (index % NAMESPACES) % APP_SHIFT)
        .collect()
}

/// Everything stored before the daemon starts.
pub fn initial(pods: usize, policies: usize) -> Vec<Stored> {
    let mut objects: Vec<Stored> = (0..NAMESPACES).map(profile).collect();
    objects.extend((0..policies).map(policy));
    objects.extend((0..pods).map(|index| pod(index, 0)));
    objects
}

/// The objects grouped as the engine's first `Replace` of each etcd kind (empty kinds too).
pub fn by_kind(objects: &[Stored]) -> BTreeMap<InputKind, BTreeMap<String, Value>> {
    let mut kinds: BTreeMap<InputKind, BTreeMap<String, Value>> = InputKind::ETCD
        .iter()
        .map(|kind| (*kind, BTreeMap::new()))
        .collect();
    for object in objects {
        kinds
            .entry(object.kind)
            .or_default()
            .insert(object.key.clone(), object.value.clone());
    }
    kinds
}
