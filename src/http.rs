//! HTTP endpoints: `/liveness` and `/readiness` on the health address (default localhost:9099)
//! and `/metrics` on the metrics address (default :9091).
//!
//! Health answers 200 with the reporter table when good and 503 with the same table when not,
//! for any method, as Felix does.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use tokio::net::TcpListener;

use crate::health::HealthRegistry;
use crate::metrics::Metrics;

async fn liveness(State(health): State<HealthRegistry>) -> (StatusCode, String) {
    let summary = health.summary(Instant::now());
    (status(summary.live), summary.table())
}

async fn readiness(State(health): State<HealthRegistry>) -> (StatusCode, String) {
    let summary = health.summary(Instant::now());
    (status(summary.ready), summary.table())
}

fn status(good: bool) -> StatusCode {
    if good {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn metrics_text(
    State(metrics): State<Metrics>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
}

/// The health router (exposed for tests that want to bind their own listener).
pub fn health_router(health: HealthRegistry) -> Router {
    Router::new()
        .route("/liveness", any(liveness))
        .route("/readiness", any(readiness))
        .with_state(health)
}

pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", any(metrics_text))
        .with_state(metrics)
}

/// Binds `addr` and serves `router` until the task is dropped.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn readiness_follows_reporters() {
        let health = HealthRegistry::new();
        health.register("datastore", Some(Duration::from_secs(30)), Instant::now());
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, health_router(health.clone())));

        assert!(get(addr, "/liveness").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readiness").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        health.report("datastore", true, true, "in sync", Instant::now());
        let ready = get(addr, "/readiness").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(ready.contains("datastore"));
    }
}
