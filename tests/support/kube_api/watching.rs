//! WATCH: a task per watch turns the retained history into newline-delimited JSON events.

use super::store::ApiError;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::routes::{filter_from, status_object, Route};
use super::selectors::Filter;
use super::store::{api_error, Change, EventType, ResourceType, Store};
use super::{Shared, BOOKMARK_INTERVAL};

/// The event a watcher with `filter` sees for `change`, if any (selector transitions included).
pub(super) fn event_for(filter: &Filter, change: &Change) -> Option<Value> {
    if change.resource != filter.resource || !filter.namespace_matches(&change.namespace) {
        return None;
    }
    let now = filter.object_matches(&change.object);
    let before = change
        .previous
        .as_ref()
        .is_some_and(|previous| filter.object_matches(previous));
    let event = match (change.event, before, now) {
        (EventType::Added, _, true) => "ADDED",
        (EventType::Deleted, true, _) => "DELETED",
        (EventType::Modified, true, true) => "MODIFIED",
        (EventType::Modified, false, true) => "ADDED",
        (EventType::Modified, true, false) => "DELETED",
        _ => return None,
    };
    Some(json!({ "type": event, "object": change.object }))
}

pub(super) fn event_line(event: &Value) -> Bytes {
    Bytes::from(format!("{event}\n"))
}

pub(super) fn gone_event(from: u64) -> Value {
    let error = api_error(410, "Expired", format!("too old resource version: {from}"));
    json!({ "type": "ERROR", "object": status_object(&error, None) })
}

/// A BOOKMARK at `resource_version`: every change up to it has been sent on this watch.
pub(super) fn bookmark_event(
    store: &Store,
    resource: &ResourceType,
    resource_version: u64,
    initial_events_end: bool,
) -> Value {
    let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let kind = store.kinds.get(resource).cloned().unwrap_or_default();
    json!({ "type": "BOOKMARK", "object": { "apiVersion": resource.api_version(), "kind": kind, "metadata": metadata } })
}

/// Counts an open watch for as long as its task runs.
pub(super) struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn start_watch(
    shared: &Arc<Shared>,
    route: &Route,
    query: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let filter = filter_from(route, query)?;
    let requested = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or_default();
    let from = match requested {
        "" | "0" => None,
        text => Some(text.parse::<u64>().map_err(|_| {
            api_error(
                400,
                "BadRequest",
                format!("invalid resourceVersion {text:?}"),
            )
        })?),
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|value| value == "true" || value == "1");
    let initial_events = query
        .get("sendInitialEvents")
        .is_some_and(|value| value == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|value| value.parse::<u64>().ok())
        .map(Duration::from_secs);

    // Everything before the first change the watch streams is decided under one lock.
    let (mut initial, cursor) = {
        let store = shared.store();
        match from {
            Some(from) if from < store.compacted_through => (vec![gone_event(from)], None),
            Some(from) if !initial_events => (Vec::new(), Some(from)),
            _ => {
                let objects = store.list(&filter);
                let mut events: Vec<Value> = objects
                    .into_iter()
                    .map(|object| json!({ "type": "ADDED", "object": object }))
                    .collect();
                if initial_events {
                    events.push(bookmark_event(
                        &store,
                        &filter.resource,
                        store.resource_version,
                        true,
                    ));
                }
                (events, Some(store.resource_version))
            }
        }
    };
    // Subscribed before answering, so a `break_watches` right after this request still counts.
    let signals = Signals {
        changes: shared.changes.subscribe(),
        breaker: shared.watch_breaker.subscribe(),
    };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    let guard = OpenWatch(shared.clone());
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let _guard = guard;
        for event in initial.drain(..) {
            if sender.send(Ok(event_line(&event))).await.is_err() {
                return;
            }
        }
        if let Some(cursor) = cursor {
            let options = StreamOptions { bookmarks, timeout };
            stream_changes(&task_shared, &filter, cursor, options, signals, &sender).await;
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default())
}

/// What wakes a watch task: store changes, and the test hook that breaks connections.
pub(super) struct Signals {
    changes: watch::Receiver<u64>,
    breaker: watch::Receiver<u64>,
}

pub(super) struct StreamOptions {
    bookmarks: bool,
    timeout: Option<Duration>,
}

type EventSender = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Sends every change after `cursor` that the filter selects, until the client goes away, the
/// timeout passes (clean end), history the watch still needs is compacted (410) or the test
/// breaks watches (aborted connection).
pub(super) async fn stream_changes(
    shared: &Shared,
    filter: &Filter,
    mut cursor: u64,
    options: StreamOptions,
    mut signals: Signals,
    sender: &EventSender,
) {
    let deadline = options
        .timeout
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let timed_out = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(timed_out);
    let mut bookmark_timer = tokio::time::interval(BOOKMARK_INTERVAL);
    bookmark_timer.reset();
    loop {
        signals.changes.mark_unchanged();
        let (events, gone) = {
            let store = shared.store();
            if cursor < store.compacted_through {
                (vec![gone_event(cursor)], true)
            } else {
                let start = store
                    .history
                    .partition_point(|change| change.resource_version <= cursor);
                let events: Vec<Value> = store.history[start..]
                    .iter()
                    .filter_map(|change| event_for(filter, change))
                    .collect();
                cursor = store.resource_version;
                (events, false)
            }
        };
        for event in events {
            if sender.send(Ok(event_line(&event))).await.is_err() {
                return;
            }
        }
        if gone {
            return;
        }
        tokio::select! {
            _ = signals.changes.changed() => {}
            _ = bookmark_timer.tick(), if options.bookmarks => {
                let event = bookmark_event(&shared.store(), &filter.resource, cursor, false);
                if sender.send(Ok(event_line(&event))).await.is_err() {
                    return;
                }
            }
            _ = &mut timed_out, if deadline.is_some() => return,
            _ = signals.breaker.changed() => {
                // An error item makes hyper abort the connection instead of ending it cleanly.
                let error = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "watch broken by the test");
                let _ = sender.send(Err(error)).await;
                return;
            }
        }
    }
}
