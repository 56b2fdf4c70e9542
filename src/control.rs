//! The daemon's local control socket: one JSON request per line, one JSON response per line.
//!
//! Used by `starling node status` (and by the CNI plugin for address management) so that they
//! talk to the running daemon instead of to the datastore. The socket lives under
//! `/var/run/calico/` by default so the DaemonSet's existing host path carries it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Default socket path (override with `STARLING_CONTROL_SOCKET`).
pub const DEFAULT_SOCKET: &str = starling_model::config::DEFAULT_CONTROL_SOCKET;

/// Longest accepted request line; anything larger is a garbled client.
const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "the Starling daemon is not running on this node (no control socket at {path}): {source}"
    )]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the Starling daemon at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Starling daemon at {path} did not answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("the Starling daemon at {path} sent an unreadable answer: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Sends one request and waits for its response.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    path: &Path,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let exchange = async {
        let stream =
            UnixStream::connect(path)
                .await
                .map_err(|source| ControlError::NotRunning {
                    path: path.to_path_buf(),
                    source,
                })?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).map_err(|source| ControlError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
        line.push(b'\n');
        write.write_all(&line).await.map_err(io)?;
        let mut reader = BufReader::new(read);
        let mut answer = String::new();
        reader.read_line(&mut answer).await.map_err(io)?;
        serde_json::from_str(&answer).map_err(|source| ControlError::Decode {
            path: path.to_path_buf(),
            source,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.to_path_buf(),
            timeout,
        })?
}

/// Serves requests on `path` until the task is dropped; each connection is handled concurrently.
///
/// A request that does not parse gets `on_garbage(error text)` as its answer and is logged once;
/// it never stops the server.
pub async fn serve<Req, Resp, H, Fut>(
    path: &Path,
    handler: H,
    on_garbage: fn(String) -> Resp,
) -> std::io::Result<()>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a previous run would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let handler = Arc::new(handler);
    loop {
        let (stream, _) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
            let mut line = String::new();
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let response = match serde_json::from_str::<Req>(&line) {
                Ok(request) => handler(request).await,
                Err(err) => {
                    tracing::warn!(%err, "ignoring a garbled control request");
                    on_garbage(format!("unreadable request: {err}"))
                }
            };
            if let Ok(mut bytes) = serde_json::to_vec(&response) {
                bytes.push(b'\n');
                let _ = write.write_all(&bytes).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    enum Request {
        Echo(String),
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    enum Response {
        Echo(String),
        Error(String),
    }

    #[tokio::test]
    async fn round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let server_path = path.clone();
        tokio::spawn(async move {
            serve(
                &server_path,
                |Request::Echo(text)| async move { Response::Echo(text) },
                Response::Error,
            )
            .await
        });
        // Poll until the server has bound the socket.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let answer: Response = loop {
            match call(&path, &Request::Echo("hi".into()), Duration::from_secs(2)).await {
                Ok(answer) => break answer,
                Err(ControlError::NotRunning { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::task::yield_now().await
                }
                Err(err) => panic!("{err}"),
            }
        };
        assert_eq!(answer, Response::Echo("hi".into()));

        let garbage: Response = call(&path, &"not a request", Duration::from_secs(2))
            .await
            .unwrap();
        assert!(matches!(garbage, Response::Error(text) if text.contains("unreadable request")));
    }

    #[tokio::test]
    async fn missing_daemon_is_named() {
        let err = call::<_, Response>(
            Path::new("/nonexistent/starling.sock"),
            &Request::Echo("x".into()),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("daemon is not running"), "{err}");
    }
}
