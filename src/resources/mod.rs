//! Calico's resources as they appear on the wire: the `crd.projectcalico.org/v1` CRD types
//! (also the `spec` of the etcd `projectcalico.org/v3` objects), object metadata handling, and
//! the Calico node information in Kubernetes Node annotations or the etcd Node resource.
//!
//! Contract: these types read any object Calico writes (unknown fields are ignored, every
//! optional field stays `None` when absent) and write back the same field names, omitting what
//! is `None`. They do not validate; `crate::model::validate` turns them into domain types.
//! CRD manifests are generated from these same types (`crate::crds`).

pub mod bgpconfig;
pub mod bgppeer;
pub mod felixconfig;
pub mod ipam;
pub mod ippool;
pub mod ipreservation;
pub mod meta;
pub mod node;
pub(crate) mod schema;

pub use bgpconfig::{BGPConfiguration, BGPConfigurationSpec};
pub use bgppeer::{BGPPeer, BGPPeerSpec};
pub use felixconfig::{FelixConfiguration, FelixConfigurationSpec};
pub use ippool::{IPPool, IPPoolSpec};
pub use ipreservation::{IPReservation, IPReservationSpec};
pub use meta::{V3Metadata, V3Object};
pub use node::{CalicoNodeResource, NodeSpec, NodeStatus};
