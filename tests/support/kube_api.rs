//! An in-process Kubernetes API server for integration tests: a small, honest test double.
//!
//! Include it with `#[path = "support/kube_api.rs"] mod kube_api;`, then
//! `let server = KubeApiServer::start().await; let client = server.client();` (or
//! `KubeApiServer::start_on(listener)` to serve on a listener bound in a lab namespace).
//!
//! It serves ANY resource path, `/api/v1/...` (core) and `/apis/{group}/{version}/...`, both
//! cluster-scoped (`/{plural}/{name}`) and namespaced (`/namespaces/{ns}/{plural}/{name}`), keeping
//! objects as JSON per (group, version, plural, namespace, name) with one global resourceVersion.
//!
//! Honoured:
//! * GET item; LIST with list `metadata.resourceVersion`, `labelSelector` (`=`, `==`, `!=`, `in`,
//!   `notin`, `key`, `!key`) and `fieldSelector` (`metadata.name`, `metadata.namespace`,
//!   `spec.nodeName`; `=`, `==`, `!=`). A LIST without a namespace spans all namespaces.
//! * WATCH (`watch=1|true`): newline-delimited ADDED/MODIFIED/DELETED from `resourceVersion`
//!   (absent or "0": synthetic ADDED for current objects first; `sendInitialEvents=true`: the same,
//!   then a BOOKMARK annotated `k8s.io/initial-events-end`), label/field selectors (an object that
//!   stops/starts matching yields DELETED/ADDED as a real server does), `allowWatchBookmarks`
//!   (a BOOKMARK every `BOOKMARK_INTERVAL`), `timeoutSeconds` (clean end of stream). A
//!   resourceVersion older than the retained history gets an ERROR event holding a 410 Gone Status.
//! * POST create: 409 AlreadyExists; sets uid, resourceVersion, creationTimestamp, generation 1,
//!   the namespace from the path; `metadata.generateName`.
//! * PUT update: 404 if absent, 409 Conflict if the body's resourceVersion is stale (a body without
//!   resourceVersion is an unconditional update); uid/creationTimestamp are kept; generation grows
//!   when anything outside `metadata` and `status` changes.
//! * PATCH: `merge-patch+json`; `strategic-merge-patch+json` applied as a merge patch (lists are
//!   replaced, `$patch` directives are not understood); `json-patch+json` with add, remove, replace,
//!   test, copy, move; `apply-patch+yaml` with a JSON body approximated as "merge patch, create if
//!   absent" (no field ownership, no apply conflicts). A patch carrying a stale
//!   `metadata.resourceVersion` gets 409.
//! * DELETE item (immediate: no finalizers, no grace period) with DeleteOptions
//!   `preconditions.uid` / `preconditions.resourceVersion` (409 on mismatch); DELETE on a
//!   collection path deletes what the selectors match.
//! * `/status` (GET/PUT/PATCH) for resources declared to have a status subresource (defaults:
//!   core nodes, pods, namespaces, services; Calico ippools, caliconodestatuses, tiers,
//!   kubecontrollersconfigurations; add more with `declare_status_subresource`): it changes only
//!   `status`, and main-resource writes keep the old `status`. Exception, as in Kubernetes' node
//!   and pod status strategies (Calico relies on them to write Node annotations via UpdateStatus
//!   and pod IP annotations via a status patch): for core Nodes and Pods a status write also
//!   persists `metadata` (labels, annotations, ...); only `spec` is kept.
//!   Undeclared resources answer 404 on `/status`, like a real server.
//! * Errors are `Status` objects (kind Status, status Failure, code, reason, message, details).
//! * `GET /version`.
//!
//! Not honoured (by design, keep tests honest about it): authentication/authorization, admission,
//! schema validation and defaulting, discovery (`/api`, `/apis`), `limit`/`continue` (every LIST
//! returns everything with no continue token), the `resourceVersion` of GET/LIST (always latest),
//! `dryRun`, managedFields, finalizers and graceful deletion, ownerReference garbage collection,
//! status reset on create, cluster- vs namespace-scope checks (the path decides), protobuf, HTTP/2.
//!
//! Test hooks: `break_watches`, `compact`, `set_unavailable` (503 to everything and drops open
//! watches), `request_count(verb)`, `open_watch_count`, `resource_version`, and
//! `put_object` / `get_object` / `list_objects` / `delete_object` (these bypass `set_unavailable`
//! and emit watch events like API writes; `put_object` creates or replaces the whole object,
//! status included, without a resourceVersion check). History is kept in full until `compact()`.
//!
//! Layout: this file holds the public surface; the pieces live beside it in `kube_api/`
//! (`store`, `selectors`, `patch`, `routes`, `watching`), loaded with `#[path]` so the module works
//! from any integration-test crate.
//!
//! Clients: `client()` / `config()` disable kube's retry layer so a 503 reaches the caller at
//! once; a client built from `kubeconfig_yaml` / `write_kubeconfig` keeps kube's default retry
//! (503 retried up to 15 times, backoff doubling from 5 ms), so keep outages short for such code.
#![allow(dead_code)]

#[path = "kube_api/patch.rs"]
mod patch;
#[path = "kube_api/routes.rs"]
mod routes;
#[path = "kube_api/selectors.rs"]
mod selectors;
#[path = "kube_api/store.rs"]
mod store;
#[path = "kube_api/watching.rs"]
mod watching;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use routes::handle;
use selectors::Filter;
pub use store::ResourceType;
use store::{Store, Write};

/// How often a watch that asked for bookmarks gets one (short, so tests see them quickly).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_millis(500);

struct Shared {
    store: Mutex<Store>,
    changes: watch::Sender<u64>,
    watch_breaker: watch::Sender<u64>,
    unavailable: AtomicBool,
    open_watches: AtomicUsize,
    requests: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not hide the store from the others.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running server; dropping it stops accepting connections and ends open watches.
pub struct KubeApiServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl KubeApiServer {
    /// Binds 127.0.0.1 on a free port and serves in a background task of the current runtime.
    pub async fn start() -> KubeApiServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        KubeApiServer::start_on(listener).await
    }

    /// Serves on a listener bound elsewhere, say inside a lab namespace (bind it on a thread
    /// that joined the namespace: the socket stays there whichever thread accepts), so daemons
    /// in other namespaces reach the server over the lab's network.
    pub async fn start_on(listener: std::net::TcpListener) -> KubeApiServer {
        let mut store = Store::default();
        for (api_version, plural) in [
            ("v1", "nodes"),
            ("v1", "pods"),
            ("v1", "namespaces"),
            ("v1", "services"),
            ("crd.projectcalico.org/v1", "ippools"),
            ("crd.projectcalico.org/v1", "caliconodestatuses"),
            ("crd.projectcalico.org/v1", "tiers"),
            ("crd.projectcalico.org/v1", "kubecontrollersconfigurations"),
        ] {
            store
                .status_subresources
                .insert(ResourceType::new(api_version, plural));
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changes: watch::channel(0).0,
            watch_breaker: watch::channel(0).0,
            unavailable: AtomicBool::new(false),
            open_watches: AtomicUsize::new(0),
            requests: Mutex::new(BTreeMap::new()),
        });
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let address = listener.local_addr().expect("local address");
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        KubeApiServer {
            shared,
            address,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Client configuration for this server. kube's default retry layer is switched off: it
    /// retries 503/429/504 up to 15 times with exponential backoff (minutes in total), which
    /// would hide `set_unavailable` from tests. Clients built from `kubeconfig_yaml` keep it.
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("valid server url"));
        config.default_retry = false;
        config
    }

    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube client for the test server")
    }

    /// A kubeconfig pointing at this server (no credentials), for code that reads KUBECONFIG.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
             users:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    \
             user: test\n    namespace: default\ncurrent-context: test\n",
            self.url()
        )
    }

    /// Writes `kubeconfig_yaml` to a temporary file that lives as long as the returned handle.
    pub fn write_kubeconfig(&self) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().expect("temporary kubeconfig");
        file.write_all(self.kubeconfig_yaml().as_bytes())
            .expect("write kubeconfig");
        file
    }

    /// Drops every open watch connection mid-stream; clients must reconnect.
    pub fn break_watches(&self) {
        self.shared
            .watch_breaker
            .send_modify(|generation| *generation += 1);
    }

    /// Forgets all history: a watch from any resourceVersion older than now gets 410 Gone.
    pub fn compact(&self) {
        let mut store = self.shared.store();
        store.compacted_through = store.resource_version;
        store.history.clear();
    }

    /// While true every request gets 503; switching it on also drops open watches.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.unavailable.store(unavailable, Ordering::SeqCst);
        if unavailable {
            self.break_watches();
        }
    }

    /// Requests received for a verb: get, list, watch, create, update, patch, delete,
    /// deletecollection (status subresource requests count under their verb too).
    pub fn request_count(&self, verb: &str) -> u64 {
        let requests = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        requests.get(verb).copied().unwrap_or(0)
    }

    pub fn open_watch_count(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version
    }

    pub fn declare_status_subresource(&self, api_version: &str, plural: &str) {
        self.shared
            .store()
            .status_subresources
            .insert(ResourceType::new(api_version, plural));
    }

    /// Creates or unconditionally replaces an object (namespace from `metadata.namespace`),
    /// emitting watch events like an API write; returns the stored object.
    pub fn put_object(&self, api_version: &str, plural: &str, object: Value) -> Value {
        let resource = ResourceType::new(api_version, plural);
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("put_object needs metadata.name")
            .to_string();
        let mut store = self.shared.store();
        let result = match store
            .objects
            .get(&(resource.clone(), namespace.clone(), name.clone()))
        {
            Some(_) => {
                let mut object = object;
                object["metadata"]
                    .as_object_mut()
                    .map(|metadata| metadata.remove("resourceVersion"));
                store.update(&resource, &namespace, &name, object, Write::Whole)
            }
            None => store.create(&resource, &namespace, object),
        }
        .expect("put_object");
        drop(store);
        self.shared.changes.send_replace(self.resource_version());
        result
    }

    pub fn get_object(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = (
            ResourceType::new(api_version, plural),
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        );
        self.shared.store().objects.get(&key).cloned()
    }

    /// Objects of a type, in one namespace or (None) all of them, ordered by namespace and name.
    pub fn list_objects(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> Vec<Value> {
        let filter = Filter {
            resource: ResourceType::new(api_version, plural),
            namespace: namespace.map(str::to_string),
            labels: Vec::new(),
            fields: Vec::new(),
        };
        self.shared.store().list(&filter)
    }

    pub fn delete_object(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let resource = ResourceType::new(api_version, plural);
        let deleted = self
            .shared
            .store()
            .delete(&resource, namespace.unwrap_or_default(), name, &Value::Null)
            .ok();
        self.shared.changes.send_replace(self.resource_version());
        deleted
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.break_watches();
        self.task.abort();
    }
}
