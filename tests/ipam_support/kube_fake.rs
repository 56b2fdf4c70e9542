//! A minimal stand-in for the Kubernetes API, enough for the IPAM kinds: cluster-scoped custom
//! resources under /apis/crd.projectcalico.org/v1 with get, list, create (409 AlreadyExists),
//! replace (resourceVersion check, 409 Conflict) and delete (uid/resourceVersion preconditions).
//! Until the shared test server (tests/support/kube_api.rs) is merged, the IPAM kube tests use this.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// One change: (revision, plural, ADDED|MODIFIED|DELETED, object).
type Event = (u64, String, &'static str, Value);

struct Objects {
    by_key: BTreeMap<(String, String), Value>,
    revision: u64,
    /// Every mutating call, e.g. `PUT ipamhandles/x deleted=true`, for assertions.
    log: Vec<String>,
    /// Every change, so a watch from resourceVersion N replays what it missed.
    history: Vec<Event>,
    live: tokio::sync::broadcast::Sender<Event>,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            by_key: BTreeMap::new(),
            revision: 0,
            log: Vec::new(),
            history: Vec::new(),
            live: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl Objects {
    fn record(&mut self, plural: &str, kind: &'static str, object: &Value) {
        let event = (self.revision, plural.to_string(), kind, object.clone());
        self.history.push(event.clone());
        let _ = self.live.send(event);
    }
}

#[derive(Clone, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<Objects>>,
}

fn reply(code: StatusCode, body: Value) -> Response {
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    reply(
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
        }),
    )
}

impl FakeApi {
    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap()
    }

    /// Mutating calls seen so far.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Stores an object as if another client had written it.
    pub fn insert(&self, plural: &str, mut object: Value) {
        let mut objects = self.lock();
        objects.revision += 1;
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        object["metadata"]["resourceVersion"] = json!(objects.revision.to_string());
        object["metadata"]["uid"] = json!(format!("uid-{}", objects.revision));
        objects.by_key.insert((plural.to_string(), name), object);
    }

    /// Serves on a free loopback port; returns the base URL.
    pub async fn serve(&self) -> String {
        let router = Router::new()
            .route(
                "/apis/crd.projectcalico.org/v1/{plural}",
                get(list).post(create),
            )
            .route(
                "/apis/crd.projectcalico.org/v1/{plural}/{name}",
                get(read).put(replace).delete(remove),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        format!("http://{address}")
    }

    pub fn client(url: &str) -> kube::Client {
        let config = kube::Config::new(url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

async fn list(
    State(api): State<FakeApi>,
    Path(plural): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let query = uri.query().unwrap_or("");
    let parameter = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    if matches!(parameter("watch").as_deref(), Some("true" | "1")) {
        let since: u64 = parameter("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return watch(&api, plural, since);
    }
    let objects = api.lock();
    let items: Vec<Value> = objects
        .by_key
        .iter()
        .filter(|((p, _), _)| *p == plural)
        .map(|(_, v)| v.clone())
        .collect();
    reply(
        StatusCode::OK,
        json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "List",
            "metadata": {"resourceVersion": objects.revision.to_string()}, "items": items
        }),
    )
}

/// A watch: replayed history after `since`, then live changes, one JSON object per line.
fn watch(api: &FakeApi, plural: String, since: u64) -> Response {
    let (replay, receiver) = {
        // Under the lock, so no change falls between the replay and the subscription.
        let objects = api.lock();
        let replay: Vec<Event> = objects
            .history
            .iter()
            .filter(|e| e.0 > since)
            .cloned()
            .collect();
        (replay, objects.live.subscribe())
    };
    let live = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((event, receiver)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    let lines = futures::stream::iter(replay)
        .chain(live)
        .filter(move |event| std::future::ready(event.1 == plural))
        .map(|(_, _, kind, object)| {
            Ok::<_, std::convert::Infallible>(Bytes::from(
                json!({"type": kind, "object": object}).to_string() + "\n",
            ))
        });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}

async fn read(
    State(api): State<FakeApi>,
    Path((plural, name)): Path<(String, String)>,
) -> Response {
    match api.lock().by_key.get(&(plural.clone(), name.clone())) {
        Some(object) => reply(StatusCode::OK, object.clone()),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} {name} not found"),
        ),
    }
}

async fn create(State(api): State<FakeApi>, Path(plural): Path<String>, body: Bytes) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut objects = api.lock();
    let key = (plural.clone(), name.clone());
    if objects.by_key.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{plural} {name} already exists"),
        );
    }
    objects.revision += 1;
    object["metadata"]["resourceVersion"] = json!(objects.revision.to_string());
    object["metadata"]["uid"] = json!(format!("uid-{}", objects.revision));
    objects.log.push(format!("POST {plural}/{name}"));
    objects.record(&plural, "ADDED", &object);
    objects.by_key.insert(key, object.clone());
    reply(StatusCode::CREATED, object)
}

async fn replace(
    State(api): State<FakeApi>,
    Path((plural, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let mut objects = api.lock();
    let key = (plural.clone(), name.clone());
    let Some(current) = objects.by_key.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} {name} not found"),
        );
    };
    if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!("{plural} {name}: the object has been modified"),
        );
    }
    objects.revision += 1;
    object["metadata"]["resourceVersion"] = json!(objects.revision.to_string());
    object["metadata"]["uid"] = current["metadata"]["uid"].clone();
    let deleted = &object["spec"]["deleted"];
    objects.log.push(format!(
        "PUT {plural}/{name} deleted={}",
        deleted
            .as_str()
            .map(str::to_string)
            .unwrap_or(deleted.to_string())
    ));
    objects.record(&plural, "MODIFIED", &object);
    objects.by_key.insert(key, object.clone());
    reply(StatusCode::OK, object)
}

async fn remove(
    State(api): State<FakeApi>,
    Path((plural, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut objects = api.lock();
    let key = (plural.clone(), name.clone());
    let Some(current) = objects.by_key.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} {name} not found"),
        );
    };
    let preconditions = &options["preconditions"];
    for field in ["uid", "resourceVersion"] {
        let wanted = &preconditions[field];
        if !wanted.is_null() && *wanted != current["metadata"][field] {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                format!("{plural} {name}: precondition on {field} failed"),
            );
        }
    }
    objects.log.push(format!(
        "DELETE {plural}/{name} uid={}",
        preconditions["uid"].as_str().unwrap_or("-")
    ));
    objects.by_key.remove(&key);
    objects.revision += 1;
    objects.record(&plural, "DELETED", &current);
    reply(StatusCode::OK, current)
}
