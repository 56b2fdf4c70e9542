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
use tokio::sync::{mpsc, oneshot, Mutex};

use super::ipam_service::IpamService;
use super::policy::PolicyRequest;
use crate::bgp::speaker::SpeakerHandle;
use crate::cni::ipam_protocol::{IpamRequest, IpamResponse};
use crate::control::{self, ControlError};
use crate::policy::explain_view::ExplainReply;
use crate::status::NodeStatus;

/// Requests that are the daemon's own (not IPAM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum DaemonRequest {
    NodeStatus,
    /// `starling policy explain SOURCE DESTINATION PACKET` (`NS/POD` or an address; `TCP/80`).
    PolicyExplain {
        source: String,
        destination: String,
        packet: String,
    },
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
    PolicyExplain(ExplainReply),
    Ipam(IpamResponse),
}

/// What the handler needs.
#[derive(Clone)]
pub struct ControlState {
    pub node_name: String,
    pub bgp_enabled: bool,
    pub speaker: Arc<Mutex<Option<SpeakerHandle>>>,
    pub ipam: Arc<IpamService>,
    /// The policy thread, when this daemon enforces policy.
    pub policy: Option<mpsc::Sender<PolicyRequest>>,
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

    async fn policy_explain(
        &self,
        source: String,
        destination: String,
        packet: String,
    ) -> ExplainReply {
        let error = |error: &str| ExplainReply::Error {
            error: error.to_string(),
        };
        let Some(policy) = &self.policy else {
            return error("this daemon does not enforce policy (no policy thread)");
        };
        let (reply, answer) = oneshot::channel();
        let request = PolicyRequest::Explain {
            source,
            destination,
            packet,
            reply,
        };
        if policy.send(request).await.is_err() {
            return error("the policy thread has stopped");
        }
        match tokio::time::timeout(Duration::from_secs(5), answer).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => error("the policy thread dropped the request"),
            Err(_) => error("the policy thread did not answer within 5 s (busy committing)"),
        }
    }

    pub async fn handle(&self, request: ControlRequest) -> ControlResponse {
        match request {
            ControlRequest::Daemon(DaemonRequest::NodeStatus) => {
                ControlResponse::NodeStatus(self.node_status().await)
            }
            ControlRequest::Daemon(DaemonRequest::PolicyExplain {
                source,
                destination,
                packet,
            }) => ControlResponse::PolicyExplain(
                self.policy_explain(source, destination, packet).await,
            ),
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

/// `starling policy explain`: asks the daemon at `path`.
pub async fn query_policy_explain(
    path: &std::path::Path,
    source: &str,
    destination: &str,
    packet: &str,
) -> Result<ExplainReply, ControlError> {
    let request = DaemonRequest::PolicyExplain {
        source: source.to_string(),
        destination: destination.to_string(),
        packet: packet.to_string(),
    };
    control::call(path, &request, Duration::from_secs(10)).await
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
