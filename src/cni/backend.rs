//! How the plugin reaches IPAM: the [`IpamBackend`] trait, and its real implementation that talks
//! to the daemon over the control socket.
//!
//! Socket failures are "try again later" (code 11): the kubelet retries pod set-up, and the
//! daemon is normally just restarting. The message names the socket so an operator sees at once
//! which daemon and path were expected.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ipam_protocol::{IpamRequest, IpamResponse};
use super::result::{code, CniError};
use crate::control::{self, ControlError};

/// Sends one IPAM request and returns the daemon's answer (which may itself be an error).
pub trait IpamBackend: Send + Sync {
    fn exchange(
        &self,
        request: IpamRequest,
    ) -> impl Future<Output = Result<IpamResponse, CniError>> + Send;
}

/// The daemon's control socket.
#[derive(Debug, Clone)]
pub struct SocketBackend {
    pub path: PathBuf,
}

/// Assignments may wait on datastore compare-and-swap retries; status must answer quickly.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

impl SocketBackend {
    pub fn new(path: impl Into<PathBuf>) -> SocketBackend {
        SocketBackend { path: path.into() }
    }

    /// The socket from the network config, else `STARLING_CONTROL_SOCKET`, else the default.
    pub fn locate(configured: Option<&Path>, environment: Option<String>) -> SocketBackend {
        let path = configured
            .map(Path::to_path_buf)
            .or_else(|| {
                environment
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(control::DEFAULT_SOCKET));
        SocketBackend { path }
    }
}

impl IpamBackend for SocketBackend {
    async fn exchange(&self, request: IpamRequest) -> Result<IpamResponse, CniError> {
        let timeout = if matches!(request, IpamRequest::Status) {
            STATUS_TIMEOUT
        } else {
            EXCHANGE_TIMEOUT
        };
        control::call(&self.path, &request, timeout)
            .await
            .map_err(|error| socket_error(&self.path, error))
    }
}

fn socket_error(path: &Path, error: ControlError) -> CniError {
    match error {
        ControlError::NotRunning { source, .. } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "the Starling daemon is not running on this node (no control socket at {})",
                path.display()
            ),
            source.to_string(),
        ),
        ControlError::Decode { .. } => {
            CniError::new(code::IPAM_INTERNAL, error.to_string(), String::new())
        }
        ControlError::Io { .. } | ControlError::Timeout { .. } => {
            CniError::new(code::TRY_AGAIN_LATER, error.to_string(), String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_daemon_is_try_again_later_naming_the_socket() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("absent.sock");
        let error = SocketBackend::new(&path)
            .exchange(IpamRequest::Status)
            .await
            .unwrap_err();
        assert_eq!(error.code, code::TRY_AGAIN_LATER);
        assert!(error.msg.contains("not running"), "{}", error.msg);
        assert!(
            error.msg.contains(&path.display().to_string()),
            "{}",
            error.msg
        );
    }

    #[test]
    fn socket_location_precedence() {
        let configured = SocketBackend::locate(Some(Path::new("/a.sock")), Some("/b.sock".into()));
        assert_eq!(configured.path, Path::new("/a.sock"));
        let environment = SocketBackend::locate(None, Some("/b.sock".into()));
        assert_eq!(environment.path, Path::new("/b.sock"));
        let default = SocketBackend::locate(None, Some(String::new()));
        assert_eq!(default.path, Path::new(control::DEFAULT_SOCKET));
    }
}
