//! The daemon's side of the control socket: one request enum for everything local clients
//! ask (`starling node status`, the CNI plugin's IPAM requests), answered one per line.
//!
//! Wire shape: every request is tagged by `"request"`: `{"request":"node_status"}` and the
//! `ipam_*` requests of `crate::cni::ipam_protocol`. The response is the bare answer of the
//! request's own protocol ([`NodeStatus`] or `IpamResponse`), so each client decodes only
//! its own type.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::ipam_service::IpamService;
use crate::bgp::speaker::SpeakerHandle;
use crate::cni::ipam_protocol::{IpamRequest, IpamResponse};
use crate::control::{self, ControlError};
use crate::status::NodeStatus;

/// Requests that are the daemon's own (not IPAM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum DaemonRequest {
    NodeStatus,
}

/// Any request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ControlRequest {
    Daemon(DaemonRequest),
    Ipam(Box<IpamRequest>),
}

/// Any answer on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ControlResponse {
    NodeStatus(NodeStatus),
    Ipam(IpamResponse),
}

/// What the handler needs.
#[derive(Clone)]
pub struct ControlState {
    pub node_name: String,
    pub bgp_enabled: bool,
    pub speaker: Arc<Mutex<Option<SpeakerHandle>>>,
    pub ipam: Arc<IpamService>,
}

impl ControlState {
    pub async fn node_status(&self) -> NodeStatus {
        let peers = match self.speaker.lock().await.as_ref() {
            Some(speaker) => speaker.status().await,
            None => Vec::new(),
        };
        NodeStatus {
            node_name: self.node_name.clone(),
            bgp_enabled: self.bgp_enabled,
            peers,
        }
    }

    pub async fn handle(&self, request: ControlRequest) -> ControlResponse {
        match request {
            ControlRequest::Daemon(DaemonRequest::NodeStatus) => {
                ControlResponse::NodeStatus(self.node_status().await)
            }
            ControlRequest::Ipam(request) => {
                ControlResponse::Ipam(self.ipam.handle(*request).await)
            }
        }
    }
}

/// Serves the control socket until the task is dropped.
pub async fn serve(path: PathBuf, state: ControlState) {
    let result = control::serve(
        &path,
        move |request: ControlRequest| {
            let state = state.clone();
            async move { state.handle(request).await }
        },
        |text| ControlResponse::Ipam(IpamResponse::garbage(text)),
    )
    .await;
    if let Err(error) = result {
        tracing::error!(%error, path = %path.display(), "control socket failed");
    }
}

/// `starling node status`: asks the daemon at `path`.
pub async fn query_node_status(path: &std::path::Path) -> Result<NodeStatus, ControlError> {
    control::call(path, &DaemonRequest::NodeStatus, Duration::from_secs(10)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_share_the_request_tag() {
        let status: ControlRequest = serde_json::from_str(r#"{"request":"node_status"}"#).unwrap();
        assert_eq!(status, ControlRequest::Daemon(DaemonRequest::NodeStatus));
        let ipam: ControlRequest = serde_json::from_str(r#"{"request":"ipam_status"}"#).unwrap();
        assert_eq!(ipam, ControlRequest::Ipam(Box::new(IpamRequest::Status)));
        assert!(serde_json::from_str::<ControlRequest>(r#"{"request":"reboot"}"#).is_err());
        let answer = serde_json::to_string(&ControlResponse::Ipam(IpamResponse::Ready)).unwrap();
        assert_eq!(answer, r#"{"result":"ready"}"#);
    }
}
