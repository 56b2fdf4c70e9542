//! Watch tests of the Kubernetes API test server: events, bookmarks, timeouts, 410 after
//! compaction, selector transitions, and kube-rs watcher recovery.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use super::kube_api::KubeApiServer;
use super::{api_code, eventually, node, DEADLINE};

#[tokio::test]
async fn watcher_sees_added_modified_deleted() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    server.put_object(
        "v1",
        "nodes",
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "existing" } }),
    );

    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let watch_task = tokio::spawn(
        watcher(nodes.clone(), watcher::Config::default())
            .default_backoff()
            .for_each(move |event| {
                let _ = sender.send(event);
                async {}
            }),
    );
    let mut seen = Vec::new();
    let mut next = async |seen: &mut Vec<String>, wanted: &str| {
        let start = tokio::time::Instant::now();
        while !seen.iter().any(|event| event == wanted) {
            let remaining = DEADLINE.checked_sub(start.elapsed()).unwrap_or_default();
            let event = tokio::time::timeout(remaining, receiver.recv())
                .await
                .unwrap_or_else(|_| panic!("no {wanted}; saw {seen:?}"));
            match event.expect("watcher running") {
                Ok(watcher::Event::InitApply(node)) => {
                    seen.push(format!("init {}", node.name_any()))
                }
                Ok(watcher::Event::InitDone) => seen.push("init done".into()),
                Ok(watcher::Event::Apply(node)) => seen.push(format!(
                    "apply {} {}",
                    node.name_any(),
                    node.labels().get("v").cloned().unwrap_or_default()
                )),
                Ok(watcher::Event::Delete(node)) => {
                    seen.push(format!("delete {}", node.name_any()))
                }
                Ok(watcher::Event::Init) | Err(_) => {}
            }
        }
    };
    next(&mut seen, "init existing").await;
    next(&mut seen, "init done").await;
    eventually("the watch connection", || async {
        server.open_watch_count() == 1
    })
    .await;

    nodes
        .create(&PostParams::default(), &node("n1", &[("v", "1")]))
        .await
        .unwrap();
    next(&mut seen, "apply n1 1").await;
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "v": "2" } } })),
        )
        .await
        .unwrap();
    next(&mut seen, "apply n1 2").await;
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    next(&mut seen, "delete n1").await;
    assert_eq!(
        server.request_count("list"),
        1,
        "no relist without a reason: {seen:?}"
    );
    watch_task.abort();
}

#[tokio::test]
async fn raw_watch_streams_bookmarks_times_out_and_reports_410_after_compaction() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    nodes
        .create(&PostParams::default(), &node("n1", &[]))
        .await
        .unwrap();
    let version = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    let params = WatchParams::default().timeout(2);
    assert!(params.bookmarks, "kube asks for bookmarks by default");
    let mut stream = nodes.watch(&params, &version).await.unwrap().boxed();
    nodes
        .create(&PostParams::default(), &node("n2", &[]))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = stream.try_next().await.unwrap() {
            kinds.push(match event {
                WatchEvent::Added(node) => format!("added {}", node.name_any()),
                WatchEvent::Bookmark(bookmark) => {
                    format!("bookmark {}", bookmark.metadata.resource_version)
                }
                other => format!("{other:?}"),
            });
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "timeoutSeconds ends the stream; saw {kinds:?}"
    );
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("added n2"),
        "{kinds:?}"
    );
    let latest = server.resource_version().to_string();
    assert!(
        kinds
            .iter()
            .any(|kind| *kind == format!("bookmark {latest}")),
        "{kinds:?}"
    );

    server.compact();
    let mut stream = nodes
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
    // Watching from the compaction point itself is fine.
    let mut stream = nodes
        .watch(&WatchParams::default(), &latest)
        .await
        .unwrap()
        .boxed();
    nodes
        .create(&PostParams::default(), &node("n3", &[]))
        .await
        .unwrap();
    match tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Added(node)) => assert_eq!(node.name_any(), "n3"),
        other => panic!("expected n3, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_with_label_selector_sees_objects_enter_and_leave() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    nodes
        .create(&PostParams::default(), &node("n1", &[]))
        .await
        .unwrap();
    let version = server.resource_version().to_string();
    let mut stream = nodes
        .watch(&WatchParams::default().labels("pick=yes"), &version)
        .await
        .unwrap()
        .boxed();
    for value in ["yes", "no"] {
        let patch = Patch::Merge(json!({ "metadata": { "labels": { "pick": value } } }));
        nodes
            .patch("n1", &PatchParams::default(), &patch)
            .await
            .unwrap();
    }
    let mut next = async || {
        tokio::time::timeout(DEADLINE, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert!(matches!(next().await, WatchEvent::Added(node) if node.name_any() == "n1"));
    assert!(matches!(next().await, WatchEvent::Deleted(node) if node.name_any() == "n1"));
}

#[tokio::test]
async fn watcher_relists_after_broken_watches_and_compaction_and_converges() {
    let server = KubeApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    for name in ["n1", "n2"] {
        nodes
            .create(&PostParams::default(), &node(name, &[]))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<Node>();
    let reflector_task = tokio::spawn(
        reflector(
            writer,
            watcher(nodes.clone(), watcher::Config::default()).default_backoff(),
        )
        .for_each(|_| async {}),
    );
    let names = |reader: &reflector::Store<Node>| {
        let mut names: Vec<String> = reader.state().iter().map(|node| node.name_any()).collect();
        names.sort();
        names
    };
    eventually("initial sync", || async { names(&reader) == ["n1", "n2"] }).await;
    eventually("the watch connection", || async {
        server.open_watch_count() == 1
    })
    .await;
    let lists_before = server.request_count("list");

    // While the API is away, changes happen and history is lost: the resumed watch gets 410.
    server.set_unavailable(true);
    server.delete_object("v1", "nodes", None, "n1");
    server.put_object(
        "v1",
        "nodes",
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n3" } }),
    );
    server.break_watches();
    server.compact();
    assert_eq!(api_code(&nodes.get("n2").await.unwrap_err()), Some(503));
    server.set_unavailable(false);

    eventually("convergence after relist", || async {
        names(&reader) == ["n2", "n3"]
    })
    .await;
    assert!(
        server.request_count("list") > lists_before,
        "the watcher relisted"
    );
    assert!(
        server.request_count("watch") >= 2,
        "the watcher reconnected"
    );

    // And it keeps following changes on the new watch.
    nodes
        .create(&PostParams::default(), &node("n4", &[]))
        .await
        .unwrap();
    eventually("the watch after recovery", || async {
        names(&reader) == ["n2", "n3", "n4"]
    })
    .await;
    reflector_task.abort();
}
