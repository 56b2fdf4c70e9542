//! Calico's resources as they appear on the wire: the `spec` of the `crd.projectcalico.org/v1`
//! objects (the same shape is the `spec` of the etcd `projectcalico.org/v3` objects, [`V3Object`]).
//!
//! Contract: these types read any object Calico writes (unknown fields are ignored, every
//! optional field stays `None` when absent) and write back the same field names, omitting what
//! is `None`. They do not validate; [`crate::validate`] turns them into domain types. Their
//! JSON schemas (schemars) are the CRD schemas the edge crate publishes, so the manifests
//! cannot drift from the code. The Kubernetes object wrappers (metadata, `kind`) live in the
//! edge crate, which alone depends on the Kubernetes client.

pub mod bgpconfig;
pub mod bgpfilter;
mod bgpfilter_schema;
pub mod bgppeer;
pub mod felixconfig;
pub mod ippool;
pub mod ipreservation;
mod schema;
pub mod v3;
pub mod workloadendpoint;

pub use bgpconfig::BGPConfigurationSpec;
pub use bgpfilter::BGPFilterSpec;
pub use bgppeer::BGPPeerSpec;
pub use felixconfig::FelixConfigurationSpec;
pub use ippool::IPPoolSpec;
pub use ipreservation::IPReservationSpec;
pub use v3::{V3Metadata, V3Object, V3_API_VERSION};
pub use workloadendpoint::{IpNat, WorkloadEndpointSpec};
