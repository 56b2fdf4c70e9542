//! Tests of the in-process Kubernetes API test server (tests/support/kube_api.rs), driven
//! through real kube-rs clients so they prove the double speaks the protocol kube-rs expects.

#[path = "support/kube_api.rs"]
mod kube_api;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::ResourceExt;
use serde_json::{json, Value};

use kube_api::KubeApiServer;

#[path = "kube_api_server/watch.rs"]
mod watch;

const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, failing the test at the deadline.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !condition().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "spec": { "podCIDR": "10.0.0.0/24" },
    }))
    .unwrap()
}

fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn ippool_resource() -> ApiResource {
    ApiResource {
        group: "crd.projectcalico.org".into(),
        version: "v1".into(),
        api_version: "crd.projectcalico.org/v1".into(),
        kind: "IPPool".into(),
        plural: "ippools".into(),
    }
}

#[tokio::test]
async fn create_get_list_and_stale_replace_conflicts() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());

    let created = nodes
        .create(&PostParams::default(), &node("n1", &[("a", "b")]))
        .await
        .unwrap();
    let metadata = &created.metadata;
    assert!(metadata.uid.as_deref().is_some_and(|uid| uid.len() == 36));
    assert!(metadata.creation_timestamp.is_some());
    assert_eq!(metadata.generation, Some(1));
    let first_version: u64 = created.resource_version().unwrap().parse().unwrap();

    let again = nodes
        .create(&PostParams::default(), &node("n1", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&again), Some(409));
    assert!(matches!(&again, kube::Error::Api(status) if status.reason == "AlreadyExists"));

    let fetched = nodes.get("n1").await.unwrap();
    assert_eq!(fetched.metadata.uid, created.metadata.uid);
    let missing = nodes.get("nope").await.unwrap_err();
    assert_eq!(api_code(&missing), Some(404));
    assert!(nodes.get_opt("nope").await.unwrap().is_none());

    let mut changed = fetched.clone();
    changed.spec.as_mut().unwrap().pod_cidr = Some("10.0.1.0/24".into());
    let replaced = nodes
        .replace("n1", &PostParams::default(), &changed)
        .await
        .unwrap();
    let second_version: u64 = replaced.resource_version().unwrap().parse().unwrap();
    assert!(second_version > first_version);
    assert_eq!(
        replaced.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );
    assert_eq!(replaced.metadata.uid, created.metadata.uid);

    // `fetched` still carries the first resourceVersion.
    let stale = nodes
        .replace("n1", &PostParams::default(), &fetched)
        .await
        .unwrap_err();
    assert_eq!(api_code(&stale), Some(409));
    assert!(matches!(&stale, kube::Error::Api(status) if status.reason == "Conflict"));
    assert_eq!(
        nodes
            .get("n1")
            .await
            .unwrap()
            .spec
            .unwrap()
            .pod_cidr
            .as_deref(),
        Some("10.0.1.0/24"),
        "the stale write changed nothing"
    );

    let absent = nodes
        .replace("ghost", &PostParams::default(), &node("ghost", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&absent), Some(404));

    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.metadata.resource_version,
        Some(second_version.to_string())
    );
    assert_eq!(server.request_count("create"), 2);
    assert_eq!(server.request_count("update"), 3);
    assert_eq!(server.request_count("list"), 1);
}

#[tokio::test]
async fn delete_honours_uid_and_resource_version_preconditions() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    let created = nodes
        .create(&PostParams::default(), &node("n1", &[]))
        .await
        .unwrap();

    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("00000000-0000-0000-0000-000000000000".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        api_code(&nodes.delete("n1", &wrong_uid).await.unwrap_err()),
        Some(409)
    );
    let wrong_version = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("999".into()),
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        api_code(&nodes.delete("n1", &wrong_version).await.unwrap_err()),
        Some(409)
    );
    assert!(nodes.get_opt("n1").await.unwrap().is_some());

    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.uid(),
            resource_version: created.resource_version(),
        }),
        ..DeleteParams::default()
    };
    nodes.delete("n1", &right).await.unwrap();
    assert!(nodes.get_opt("n1").await.unwrap().is_none());
    assert_eq!(
        api_code(
            &nodes
                .delete("n1", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        Some(404)
    );
    assert!(server.get_object("v1", "nodes", None, "n1").is_none());
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    for (name, labels) in [
        ("n1", vec![("zone", "a"), ("role", "edge")]),
        ("n2", vec![("zone", "b")]),
        ("n3", vec![]),
    ] {
        nodes
            .create(&PostParams::default(), &node(name, &labels))
            .await
            .unwrap();
    }
    let cases = [
        ("zone=a", vec!["n1"]),
        ("zone==b", vec!["n2"]),
        ("zone!=a", vec!["n2", "n3"]),
        ("zone in (a, b)", vec!["n1", "n2"]),
        ("zone notin (a)", vec!["n2", "n3"]),
        ("zone", vec!["n1", "n2"]),
        ("!zone", vec!["n3"]),
        ("zone,role=edge", vec!["n1"]),
        ("zone in (a,b),!role", vec!["n2"]),
    ];
    for (selector, expected) in cases {
        let list = nodes
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        let names: Vec<String> = list.items.iter().map(|node| node.name_any()).collect();
        assert_eq!(names, expected, "labelSelector {selector:?}");
    }
    let by_name = nodes
        .list(&ListParams::default().fields("metadata.name=n2"))
        .await
        .unwrap();
    assert_eq!(
        by_name
            .items
            .iter()
            .map(|node| node.name_any())
            .collect::<Vec<_>>(),
        ["n2"]
    );
    let not_name = nodes
        .list(&ListParams::default().fields("metadata.name!=n2"))
        .await
        .unwrap();
    assert_eq!(not_name.items.len(), 2);
    let bad = nodes
        .list(&ListParams::default().labels("zone in (a"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&bad), Some(400));
    let unsupported = nodes
        .list(&ListParams::default().fields("status.phase=x"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&unsupported), Some(400));

    // spec.nodeName on namespaced pods, listed per namespace and across namespaces.
    for (namespace, name, node_name) in [
        ("ns1", "p1", "n1"),
        ("ns1", "p2", "n2"),
        ("ns2", "p3", "n1"),
    ] {
        let pods: Api<Pod> = Api::namespaced(server.client(), namespace);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "nodeName": node_name, "containers": [] },
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let all_pods: Api<Pod> = Api::all(server.client());
    let on_n1 = all_pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(
        on_n1
            .items
            .iter()
            .map(|pod| pod.name_any())
            .collect::<Vec<_>>(),
        ["p1", "p3"]
    );
    let ns1: Api<Pod> = Api::namespaced(server.client(), "ns1");
    let in_ns1 = ns1.list(&ListParams::default()).await.unwrap();
    assert_eq!(in_ns1.items.len(), 2);
    assert_eq!(in_ns1.items[0].namespace().as_deref(), Some("ns1"));
    assert_eq!(server.list_objects("v1", "pods", Some("ns2")).len(), 1);
}

#[tokio::test]
async fn dynamic_objects_patches_and_status_subresource() {
    let server = KubeApiServer::start().await;
    let pools: Api<DynamicObject> = Api::all_with(server.client(), &ippool_resource());
    let pool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": { "name": "default-ipv4-ippool" },
        "spec": { "cidr": "10.244.0.0/16", "ipipMode": "Always", "blockSize": 26 },
    }))
    .unwrap();
    pools.create(&PostParams::default(), &pool).await.unwrap();

    let merge = Patch::Merge(json!({ "spec": { "ipipMode": "Never", "vxlanMode": "Always" } }));
    let merged = pools
        .patch("default-ipv4-ippool", &PatchParams::default(), &merge)
        .await
        .unwrap();
    assert_eq!(merged.data["spec"]["ipipMode"], "Never");
    assert_eq!(
        merged.data["spec"]["blockSize"], 26,
        "merge patch keeps other fields"
    );
    assert_eq!(merged.metadata.generation, Some(2));

    // The operation list's type (json-patch's) is only reachable through inference.
    let json_patch = Patch::Json::<()>(
        serde_json::from_value(json!([
            { "op": "test", "path": "/spec/vxlanMode", "value": "Always" },
            { "op": "replace", "path": "/spec/blockSize", "value": 28 },
            { "op": "remove", "path": "/spec/ipipMode" },
            { "op": "add", "path": "/spec/disabled", "value": false },
        ]))
        .unwrap(),
    );
    let patched = pools
        .patch("default-ipv4-ippool", &PatchParams::default(), &json_patch)
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["blockSize"], 28);
    assert!(patched.data["spec"].get("ipipMode").is_none());
    assert_eq!(patched.data["spec"]["disabled"], false);

    let stale = Patch::Merge(
        json!({ "metadata": { "resourceVersion": "1" }, "spec": { "blockSize": 30 } }),
    );
    let conflict = pools
        .patch("default-ipv4-ippool", &PatchParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&conflict), Some(409));

    let failed_test = Patch::Json::<()>(
        serde_json::from_value(json!([{ "op": "test", "path": "/spec/blockSize", "value": 1 }]))
            .unwrap(),
    );
    let invalid = pools
        .patch("default-ipv4-ippool", &PatchParams::default(), &failed_test)
        .await
        .unwrap_err();
    assert_eq!(api_code(&invalid), Some(422));

    // Status subresource: only status changes, and main writes keep status.
    let status = Patch::Merge(json!({ "status": { "ready": true }, "spec": { "blockSize": 31 } }));
    let with_status = pools
        .patch_status("default-ipv4-ippool", &PatchParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(with_status.data["status"]["ready"], true);
    assert_eq!(
        with_status.data["spec"]["blockSize"], 28,
        "a status write ignores spec"
    );
    let main = Patch::Merge(json!({ "status": { "ready": false } }));
    let after_main = pools
        .patch("default-ipv4-ippool", &PatchParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(
        after_main.data["status"]["ready"], true,
        "a main write ignores status"
    );

    // Server-side apply is approximated as merge-or-create.
    let apply = Patch::Apply(json!({
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": { "name": "applied" },
        "spec": { "cidr": "10.96.0.0/16" },
    }));
    pools
        .patch("applied", &PatchParams::apply("test"), &apply)
        .await
        .unwrap();
    assert_eq!(
        server
            .get_object("crd.projectcalico.org/v1", "ippools", None, "applied")
            .unwrap()["spec"]["cidr"],
        "10.96.0.0/16"
    );

    // A resource without a declared status subresource has no /status, like a real server.
    let blocks = ApiResource {
        kind: "IPAMBlock".into(),
        plural: "ipamblocks".into(),
        ..ippool_resource()
    };
    let blocks: Api<DynamicObject> = Api::all_with(server.client(), &blocks);
    server.put_object(
        "crd.projectcalico.org/v1",
        "ipamblocks",
        json!({ "kind": "IPAMBlock", "metadata": { "name": "b" } }),
    );
    assert_eq!(
        api_code(&blocks.get_status("b").await.unwrap_err()),
        Some(404)
    );
}

#[tokio::test]
async fn node_status_update_persists_annotations_but_not_spec() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    let created = nodes
        .create(&PostParams::default(), &node("n1", &[]))
        .await
        .unwrap();

    let mut update = created.clone();
    update
        .annotations_mut()
        .insert("projectcalico.org/IPv4Address".into(), "10.0.0.5/24".into());
    update.spec.as_mut().unwrap().pod_cidr = Some("192.168.0.0/24".into());
    update.status = Some(serde_json::from_value(json!({ "phase": "Running" })).unwrap());
    let updated = nodes
        .replace_status("n1", &PostParams::default(), &update)
        .await
        .unwrap();
    assert_eq!(
        updated
            .annotations()
            .get("projectcalico.org/IPv4Address")
            .map(String::as_str),
        Some("10.0.0.5/24")
    );
    assert_eq!(
        updated.spec.unwrap().pod_cidr.as_deref(),
        Some("10.0.0.0/24"),
        "status writes keep spec"
    );
    assert_eq!(updated.status.unwrap().phase.as_deref(), Some("Running"));

    // Stale status writes conflict too.
    let stale = nodes
        .replace_status("n1", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(api_code(&stale), Some(409));
}

#[tokio::test]
async fn unavailable_answers_503_and_errors_are_status_objects() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    server.set_unavailable(true);
    let error = nodes.list(&ListParams::default()).await.unwrap_err();
    match &error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 503);
            assert_eq!(status.reason, "ServiceUnavailable");
        }
        other => panic!("expected a Status, got {other:?}"),
    }
    server.set_unavailable(false);
    let missing = nodes.get("ghost").await.unwrap_err();
    match &missing {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
            assert!(status.message.contains("ghost"), "{}", status.message);
        }
        other => panic!("expected a Status, got {other:?}"),
    }
    assert_eq!(server.request_count("list"), 1);
    assert_eq!(server.request_count("get"), 1);
}

#[tokio::test]
async fn kubeconfig_file_reaches_the_server() {
    let server = KubeApiServer::start().await;
    server.put_object(
        "v1",
        "namespaces",
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "kube-system" } }),
    );
    let file = server.write_kubeconfig();
    let kubeconfig = kube::config::Kubeconfig::read_from(file.path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        config.cluster_url.to_string().trim_end_matches('/'),
        server.url()
    );
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|ns| ns.name_any())
        .collect();
    assert_eq!(names, ["kube-system"]);
    let stored: BTreeMap<String, Value> = server
        .list_objects("v1", "namespaces", None)
        .into_iter()
        .map(|object| {
            (
                object["metadata"]["name"].as_str().unwrap().to_string(),
                object,
            )
        })
        .collect();
    assert!(stored["kube-system"]["metadata"]["uid"].is_string());
}

#[tokio::test]
async fn test_hooks_generate_name_namespaces_and_collections() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());

    // put_object creates, then replaces everything (status included, unlike an API PUT).
    let node_json = |phase: &str| json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" }, "status": { "phase": phase } });
    let first = server.put_object("v1", "nodes", node_json("Pending"));
    let second = server.put_object("v1", "nodes", node_json("Running"));
    assert_eq!(first["metadata"]["uid"], second["metadata"]["uid"]);
    let fetched = nodes.get("n1").await.unwrap();
    assert_eq!(fetched.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(
        fetched.metadata.resource_version,
        Some(server.resource_version().to_string())
    );

    // generateName.
    let generated: Node =
        serde_json::from_value(json!({ "metadata": { "generateName": "worker-" } })).unwrap();
    let created = nodes
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(
        created.name_any().starts_with("worker-")
            && created.name_any().len() == "worker-".len() + 5
    );

    // The path's namespace wins and a contradicting body is rejected.
    let pods: Api<Pod> = Api::namespaced(server.client(), "ns1");
    let pod = |namespace: Option<&str>, name: &str, app: &str| -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": name, "namespace": namespace, "labels": { "app": app } } })).unwrap()
    };
    let stored = pods
        .create(&PostParams::default(), &pod(None, "p1", "web"))
        .await
        .unwrap();
    assert_eq!(stored.namespace().as_deref(), Some("ns1"));
    let mismatch = pods
        .create(&PostParams::default(), &pod(Some("ns2"), "p2", "web"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&mismatch), Some(400));
    pods.create(&PostParams::default(), &pod(None, "p3", "db"))
        .await
        .unwrap();

    // deletecollection honours the label selector.
    let deleted = pods
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=web"),
        )
        .await
        .unwrap();
    let deleted_names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .iter()
        .map(|pod| pod.name_any())
        .collect();
    assert_eq!(deleted_names, ["p1"]);
    let left: Vec<String> = server
        .list_objects("v1", "pods", None)
        .iter()
        .map(|pod| pod["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["p3"]);
    assert_eq!(server.request_count("deletecollection"), 1);
}
