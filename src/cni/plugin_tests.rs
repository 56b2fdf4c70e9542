//! Orchestration tests for `plugin.rs` with the counting allocator and an in-memory dataplane:
//! ordering, rollback, idempotence and error codes, no kernel needed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::args::PluginEnvironment;
use super::backend::IpamBackend;
use super::config::NetworkConfig;
use super::fake_ipam::CountingAllocator;
use super::ipam_protocol::{IpamErrorKind, IpamRequest, IpamResponse};
use super::plugin::{self, HostSettings};
use super::result::{code, CniError, Interface};
use super::wiring::{Leftover, PodDataplane, WiredPod, WiringRequest};

/// Host interfaces that exist, with their pod's namespace and the addresses routed to them.
#[derive(Default)]
pub(super) struct FakeDataplane {
    pub(super) wired: Mutex<BTreeMap<String, (PathBuf, Vec<IpAddr>)>>,
    last_mac: Mutex<Option<[u8; 6]>>,
    fail_wiring: bool,
}

impl PodDataplane for FakeDataplane {
    async fn wire(&self, request: &WiringRequest) -> Result<WiredPod, CniError> {
        *self.last_mac.lock().unwrap() = request.pod_mac;
        // Half the work is done before the failure, as in the kernel.
        self.wired.lock().unwrap().insert(
            request.host_interface.clone(),
            (request.netns.clone(), Vec::new()),
        );
        if self.fail_wiring {
            return Err(CniError::new(code::WIRING_FAILED, "injected failure", ""));
        }
        self.wired.lock().unwrap().insert(
            request.host_interface.clone(),
            (request.netns.clone(), request.addresses.clone()),
        );
        Ok(WiredPod {
            host: Interface {
                name: request.host_interface.clone(),
                mac: Some("ee:ee:ee:ee:ee:ee".into()),
                sandbox: None,
            },
            pod: Interface {
                name: request.pod_interface.clone(),
                mac: Some("02:00:00:00:00:01".into()),
                sandbox: Some(request.netns.display().to_string()),
            },
        })
    }

    async fn unwire(
        &self,
        host_interface: Option<&str>,
        netns: Option<&Path>,
        _pod_interface: &str,
    ) -> Result<(), CniError> {
        let mut wired = self.wired.lock().unwrap();
        if let Some(name) = host_interface {
            wired.remove(name);
        }
        if let Some(netns) = netns {
            wired.retain(|_, (pod_netns, _)| pod_netns != netns);
        }
        Ok(())
    }

    async fn remove_leftover(
        &self,
        host_interface: &str,
        released: &[IpAddr],
    ) -> Result<Leftover, CniError> {
        let mut wired = self.wired.lock().unwrap();
        let Some((_, addresses)) = wired.get(host_interface) else {
            return Ok(Leftover::Absent);
        };
        let foreign: Vec<_> = addresses
            .iter()
            .filter(|address| !released.contains(address))
            .map(|address| ipnet::IpNet::from(*address))
            .collect();
        if !foreign.is_empty() {
            return Ok(Leftover::InUse(foreign));
        }
        wired.remove(host_interface);
        Ok(Leftover::Removed)
    }

    async fn check(&self, request: &WiringRequest) -> Result<(), CniError> {
        match self.wired.lock().unwrap().get(&request.host_interface) {
            Some((_, addresses)) if *addresses == request.addresses => Ok(()),
            _ => Err(CniError::new(code::CHECK_FAILED, "not wired", "")),
        }
    }
}

/// A backend whose daemon is never there.
pub(super) struct AbsentDaemon;

impl IpamBackend for AbsentDaemon {
    async fn exchange(&self, _request: IpamRequest) -> Result<IpamResponse, CniError> {
        Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "the Starling daemon is not running on this node (no control socket at /x.sock)",
            "",
        ))
    }
}

pub(super) fn allocator() -> CountingAllocator {
    CountingAllocator::new("10.9.0.0/29".parse().unwrap(), None)
}

pub(super) fn settings() -> HostSettings {
    HostSettings {
        interface_prefix: "cali".into(),
        mtu_file: PathBuf::from("/nonexistent/mtu"),
    }
}

pub(super) fn config(extra: &str) -> NetworkConfig {
    NetworkConfig::parse(
        format!(r#"{{"name":"k8s-pod-network","cniVersion":"1.0.0","type":"starling"{extra}}}"#)
            .as_bytes(),
    )
    .unwrap()
}

pub(super) fn environment(command: &str, container: &str, pod: &str) -> PluginEnvironment {
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}");
    // The namespace path must exist for ADD; the fake dataplane never opens it.
    let values = BTreeMap::from([
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", container.to_string()),
        ("CNI_NETNS", "/proc/self/ns/net".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_ARGS", args),
    ]);
    PluginEnvironment::from_lookup(|name| values.get(name).cloned()).unwrap()
}

#[tokio::test]
async fn add_then_delete_twice() {
    let ipam = allocator();
    let dataplane = FakeDataplane::default();
    let config = config("");
    let add = environment("ADD", "c1", "web-0");
    let result = plugin::add(&config, &add, &settings(), &ipam, &dataplane)
        .await
        .unwrap();
    assert_eq!(result.ips.len(), 1);
    assert_eq!(result.ips[0].address.to_string(), "10.9.0.1/32");
    assert_eq!(result.ips[0].interface, Some(1));
    assert_eq!(
        result.interfaces[1].sandbox.as_deref(),
        Some("/proc/self/ns/net")
    );
    assert_eq!(result.routes[0].dst.to_string(), "0.0.0.0/0");
    let allocations = ipam.allocations();
    assert_eq!(
        allocations.values().collect::<Vec<_>>(),
        ["k8s-pod-network.c1"]
    );
    let requests = ipam.requests();
    let IpamRequest::Assign(assign) = &requests[0] else {
        panic!("first request is {:?}", requests[0]);
    };
    assert_eq!(assign.pod_namespace, "default");
    assert_eq!(assign.pod_name, "web-0");
    assert_eq!(assign.interface_name, "eth0");
    assert_eq!(assign.network_name, "k8s-pod-network");
    // Once wired, the endpoint is recorded with the host veth and the pod side's MAC.
    let IpamRequest::EndpointAdd(endpoint) = &requests[1] else {
        panic!("second request is {:?}", requests[1]);
    };
    assert_eq!(endpoint.handle, "k8s-pod-network.c1");
    assert_eq!(endpoint.container_id, "c1");
    assert_eq!(endpoint.pod_name, "web-0");
    assert_eq!(endpoint.interface_name, "eth0");
    assert_eq!(endpoint.host_interface, result.interfaces[0].name);
    assert!(endpoint.host_interface.starts_with("cali"));
    assert_eq!(endpoint.mac.as_deref(), Some("02:00:00:00:00:01"));
    assert_eq!(endpoint.addresses, vec!["10.9.0.1/32".parse().unwrap()]);

    let delete = environment("DEL", "c1", "web-0");
    plugin::delete(&config, &delete, &ipam, &dataplane)
        .await
        .unwrap();
    assert!(matches!(
        ipam.requests().last(),
        Some(IpamRequest::ReleaseByHandle(release))
            if release.interface_name.as_deref() == Some("eth0")
                && release.pod_name.as_deref() == Some("web-0")
    ));
    assert!(ipam.allocations().is_empty());
    assert!(dataplane.wired.lock().unwrap().is_empty());
    // Idempotent: nothing left is still success.
    plugin::delete(&config, &delete, &ipam, &dataplane)
        .await
        .unwrap();
}

#[tokio::test]
async fn failed_wiring_rolls_back() {
    let ipam = allocator();
    let dataplane = FakeDataplane {
        fail_wiring: true,
        ..FakeDataplane::default()
    };
    let error = plugin::add(
        &config(""),
        &environment("ADD", "c1", "web-0"),
        &settings(),
        &ipam,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, code::WIRING_FAILED);
    assert!(ipam.allocations().is_empty(), "{:?}", ipam.allocations());
    assert!(dataplane.wired.lock().unwrap().is_empty());
    assert!(matches!(
        ipam.requests().last(),
        Some(IpamRequest::ReleaseByHandle(release)) if release.handle == "k8s-pod-network.c1"
    ));
}

/// The counting allocator, except that recording an endpoint fails (datastore down).
struct EndpointsUnavailable(CountingAllocator);

impl IpamBackend for EndpointsUnavailable {
    async fn exchange(&self, request: IpamRequest) -> Result<IpamResponse, CniError> {
        if matches!(request, IpamRequest::EndpointAdd(_)) {
            return Ok(IpamResponse::error(
                IpamErrorKind::Unavailable,
                "writing the WorkloadEndpoint: etcd unreachable",
            ));
        }
        Ok(self.0.handle(request))
    }
}

#[tokio::test]
async fn failed_endpoint_recording_rolls_back() {
    let ipam = EndpointsUnavailable(allocator());
    let dataplane = FakeDataplane::default();
    let error = plugin::add(
        &config(""),
        &environment("ADD", "c1", "web-0"),
        &settings(),
        &ipam,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, code::TRY_AGAIN_LATER);
    assert!(
        error
            .msg
            .contains("recording the endpoint of pod default/web-0"),
        "{}",
        error.msg
    );
    assert!(error.msg.contains("etcd unreachable"), "{}", error.msg);
    assert!(
        ipam.0.allocations().is_empty(),
        "{:?}",
        ipam.0.allocations()
    );
    assert!(dataplane.wired.lock().unwrap().is_empty());
}

#[tokio::test]
async fn nothing_is_allocated_for_bad_input() {
    let ipam = allocator();
    let dataplane = FakeDataplane::default();
    let values = BTreeMap::from([
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=default"),
    ]);
    let no_pod =
        PluginEnvironment::from_lookup(|name| values.get(name).map(|v| v.to_string())).unwrap();
    let error = plugin::add(&config(""), &no_pod, &settings(), &ipam, &dataplane)
        .await
        .unwrap_err();
    assert_eq!(error.code, code::INVALID_ENVIRONMENT);

    let mut missing_netns = environment("ADD", "c2", "web-1");
    missing_netns.netns = Some(PathBuf::from("/nonexistent/netns/pod"));
    let error = plugin::add(&config(""), &missing_netns, &settings(), &ipam, &dataplane)
        .await
        .unwrap_err();
    assert_eq!(error.code, code::CONTAINER_UNKNOWN);
    assert!(ipam.requests().is_empty(), "{:?}", ipam.requests());
}

#[tokio::test]
async fn ipam_errors_keep_their_meaning() {
    let ipam = CountingAllocator::new("10.9.0.0/30".parse().unwrap(), None);
    let dataplane = FakeDataplane::default();
    let config = config("");
    for (index, pod) in ["a", "b"].iter().enumerate() {
        plugin::add(
            &config,
            &environment("ADD", &format!("c{index}"), pod),
            &settings(),
            &ipam,
            &dataplane,
        )
        .await
        .unwrap();
    }
    let full = plugin::add(
        &config,
        &environment("ADD", "c9", "c"),
        &settings(),
        &ipam,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(full.code, code::POOL_EXHAUSTED);
    assert!(full.msg.contains("10.9.0.0/30"), "{}", full.msg);
    assert!(full.msg.contains("default/c"), "{}", full.msg);

    let requested = NetworkConfig::parse(
        br#"{"name":"k8s-pod-network","cniVersion":"1.0.0","runtimeConfig":{"ips":["10.9.0.1"]}}"#,
    )
    .unwrap();
    let taken = plugin::add(
        &requested,
        &environment("ADD", "c8", "d"),
        &settings(),
        &ipam,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code, code::ADDRESS_IN_USE);

    let unavailable = super::ipam_protocol::IpamError {
        kind: IpamErrorKind::Unavailable,
        message: "not in sync".into(),
    };
    assert_eq!(unavailable.to_cni_error("x").code, code::TRY_AGAIN_LATER);
}

#[tokio::test]
async fn check_compares_with_prev_result() {
    let ipam = allocator();
    let dataplane = FakeDataplane::default();
    let add = environment("ADD", "c1", "web-0");
    let result = plugin::add(&config(""), &add, &settings(), &ipam, &dataplane)
        .await
        .unwrap();
    let prev = result.to_json("1.0.0").to_string();
    let check_config = config(&format!(r#","prevResult":{prev}"#));
    let check = environment("CHECK", "c1", "web-0");
    plugin::check(&check_config, &check, &settings(), &ipam, &dataplane)
        .await
        .unwrap();

    dataplane.wired.lock().unwrap().clear();
    let error = plugin::check(&check_config, &check, &settings(), &ipam, &dataplane)
        .await
        .unwrap_err();
    assert_eq!(error.code, code::CHECK_FAILED);

    let other_container = environment("CHECK", "c2", "web-0");
    let error = plugin::check(
        &check_config,
        &other_container,
        &settings(),
        &ipam,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, code::CHECK_FAILED, "{error}");

    let no_prev = plugin::check(&config(""), &check, &settings(), &ipam, &dataplane)
        .await
        .unwrap_err();
    assert_eq!(no_prev.code, code::INVALID_NETWORK_CONFIG);

    let old = NetworkConfig::parse(br#"{"name":"k8s-pod-network","cniVersion":"0.3.1"}"#).unwrap();
    let old_error = plugin::check(&old, &check, &settings(), &ipam, &dataplane)
        .await
        .unwrap_err();
    assert_eq!(old_error.code, code::INCOMPATIBLE_VERSION);
}

#[tokio::test]
async fn absent_daemon() {
    let dataplane = FakeDataplane::default();
    let add = plugin::add(
        &config(""),
        &environment("ADD", "c1", "web-0"),
        &settings(),
        &AbsentDaemon,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(add.code, code::TRY_AGAIN_LATER);
    assert!(dataplane.wired.lock().unwrap().is_empty());

    let delete = plugin::delete(
        &config(""),
        &environment("DEL", "c1", "web-0"),
        &AbsentDaemon,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(delete.code, code::TRY_AGAIN_LATER);

    let status = plugin::status(&AbsentDaemon).await.unwrap_err();
    assert_eq!(status.code, code::PLUGIN_NOT_AVAILABLE);
    assert!(status.msg.contains("/x.sock"), "{}", status.msg);
    plugin::status(&allocator()).await.unwrap();
}

#[test]
fn version_and_early_errors_through_execute() {
    let version_only = |name: &str| (name == "CNI_COMMAND").then(|| "VERSION".to_string());
    let (version, outcome) = super::execute(br#"{"cniVersion":"0.4.0"}"#, version_only);
    assert_eq!(version, "0.4.0");
    let answer = outcome.unwrap().unwrap();
    assert_eq!(answer["cniVersion"], "0.4.0");
    assert_eq!(answer["supportedVersions"].as_array().unwrap().len(), 5);
    // VERSION works even without a config.
    let (_, outcome) = super::execute(b"", version_only);
    assert!(outcome.unwrap().is_some());

    let add = |name: &str| match name {
        "CNI_COMMAND" => Some("ADD".to_string()),
        "CNI_CONTAINERID" => Some("c1".to_string()),
        "CNI_NETNS" => Some("/proc/self/ns/net".to_string()),
        "CNI_IFNAME" => Some("eth0".to_string()),
        "STARLING_CONTROL_SOCKET" => Some("/nonexistent/starling.sock".to_string()),
        _ => None,
    };
    let (version, garbage) = super::execute(b"\x00garbage", add);
    assert_eq!(version, super::result::LATEST_VERSION);
    assert_eq!(garbage.unwrap_err().code, code::DECODING_FAILURE);
    let (_, unknown) = super::execute(br#"{"name":"n","cniVersion":"3.0.0"}"#, add);
    assert_eq!(unknown.unwrap_err().code, code::INCOMPATIBLE_VERSION);
    let (version, no_pod) = super::execute(br#"{"name":"n","cniVersion":"0.3.1"}"#, add);
    assert_eq!(version, "0.3.1");
    assert_eq!(no_pod.unwrap_err().code, code::INVALID_ENVIRONMENT);
}

#[tokio::test]
async fn requested_mac_reaches_the_dataplane_and_bad_ones_roll_back() {
    let ipam = allocator().with_pod_mac("web-0", "02:42:ac:11:00:02");
    let dataplane = FakeDataplane::default();
    let result = plugin::add(
        &config(""),
        &environment("ADD", "c1", "web-0"),
        &settings(),
        &ipam,
        &dataplane,
    )
    .await
    .unwrap();
    assert!(!result.ips.is_empty());
    assert_eq!(
        *dataplane.last_mac.lock().unwrap(),
        Some([0x02, 0x42, 0xac, 0x11, 0, 2])
    );

    let bad = allocator().with_pod_mac("web-1", "01:00:5e:00:00:01");
    let error = plugin::add(
        &config(""),
        &environment("ADD", "c2", "web-1"),
        &settings(),
        &bad,
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, code::IPAM_REFUSED);
    assert!(bad.allocations().is_empty(), "{:?}", bad.allocations());
}

#[test]
fn mac_parsing() {
    assert_eq!(
        plugin::parse_mac("02:00:00:00:00:01").unwrap(),
        [2, 0, 0, 0, 0, 1]
    );
    assert_eq!(plugin::parse_mac("AA-BB-CC-DD-EE-FE").unwrap()[5], 0xfe);
    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:01:02",
        "zz:00:00:00:00:01",
        "2:0:0:0:0:1",
        "01:00:00:00:00:00",
    ] {
        assert!(plugin::parse_mac(bad).is_err(), "{bad}");
    }
}
