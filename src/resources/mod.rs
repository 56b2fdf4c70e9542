//! Calico's resources as Kubernetes objects: the `crd.projectcalico.org/v1` kinds around the pure
//! wire specs of `starling_model::wire`, the IPAM CRDs, object metadata handling, and the Calico
//! node information in Kubernetes Node annotations or the etcd Node resource.
//!
//! Contract: these types read any object Calico writes (unknown fields are ignored) and write back
//! the same fields. They do not validate: [`FromResource`] runs `starling_model::validate` on an
//! object's name and spec where it enters the process. CRD manifests are generated from these same
//! types (`crate::crds`).

pub mod crd;
pub mod ipam;
pub mod meta;
pub mod node;

use starling_model::validate::bgp::{
    bfd_from_annotations, import_limit_from_annotations, validate_bgp_configuration_layer,
    validate_bgp_peer,
};
use starling_model::validate::bgpfilter::validate_bgp_filter;
use starling_model::validate::felix::validate_felix_configuration;
use starling_model::validate::ippool::validate_ip_pool;
use starling_model::validate::reservation::validate_ip_reservation;
use starling_model::wire::{
    BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec, FelixConfigurationSpec, IPPoolSpec,
    IPReservationSpec,
};
use starling_model::{bgp::BgpConfigLayer, felix::FelixLayer};
use starling_model::{BgpFilter, BgpPeer, IpPool, IpReservation, ValidationError};

pub use node::{CalicoNodeResource, NodeSpec, NodeStatus};

crd::calico_resource!(
    IPPool,
    IPPoolSpec,
    "ippools",
    "An IPPool: a range of addresses Calico IPAM assigns from, with its routing and NAT settings."
);
crd::calico_resource!(
    BGPConfiguration,
    BGPConfigurationSpec,
    "bgpconfigurations",
    "A BGPConfiguration: cluster-wide (default) or per-node (node.<name>) BGP settings."
);
crd::calico_resource!(
    BGPPeer,
    BGPPeerSpec,
    "bgppeers",
    "A BGPPeer: a BGP peering that some or all nodes establish."
);
crd::calico_resource!(
    BGPFilter,
    BGPFilterSpec,
    "bgpfilters",
    "A BGPFilter: ordered accept/reject rules for routes imported from and exported to the BGPPeers naming it."
);
crd::calico_resource!(
    FelixConfiguration,
    FelixConfigurationSpec,
    "felixconfigurations",
    "A FelixConfiguration: dataplane settings, global (default) or per node (node.<name>)."
);
crd::calico_resource!(
    IPReservation,
    IPReservationSpec,
    "ipreservations",
    "An IPReservation: addresses Calico IPAM never assigns automatically."
);

/// Validation of a Kubernetes object into its domain type, by its name and spec.
pub trait FromResource<Object>: Sized {
    fn from_resource(object: &Object) -> Result<Self, ValidationError>;
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

impl FromResource<IPPool> for IpPool {
    /// A deletionTimestamp marks the pool as being deleted.
    fn from_resource(pool: &IPPool) -> Result<IpPool, ValidationError> {
        let deleting = pool.metadata.deletion_timestamp.is_some();
        validate_ip_pool(name_of(&pool.metadata), &pool.spec, deleting)
    }
}

impl FromResource<BGPConfiguration> for BgpConfigLayer {
    fn from_resource(config: &BGPConfiguration) -> Result<BgpConfigLayer, ValidationError> {
        let name = name_of(&config.metadata);
        let mut layer = validate_bgp_configuration_layer(name, &config.spec)?;
        // Only the `default` object configures the mesh (as for the other mesh settings).
        if name == "default" {
            if let Some(annotations) = &config.metadata.annotations {
                layer.config.node_mesh_bfd =
                    bfd_or_warn(bfd_from_annotations("BGPConfiguration", name, annotations));
            }
        }
        Ok(layer)
    }
}

impl FromResource<BGPPeer> for BgpPeer {
    fn from_resource(peer: &BGPPeer) -> Result<BgpPeer, ValidationError> {
        let name = name_of(&peer.metadata);
        let mut validated = validate_bgp_peer(name, &peer.spec)?;
        if let Some(annotations) = &peer.metadata.annotations {
            validated.import_limit = import_limit_from_annotations(name, annotations)?;
            validated.bfd = bfd_or_warn(bfd_from_annotations("BGPPeer", name, annotations));
        }
        Ok(validated)
    }
}

/// A malformed BFD annotation must not take the peer (or the mesh) down: the sessions run
/// without BFD and the error is logged once per distinct message (objects are re-read on every
/// watch event and resync).
fn bfd_or_warn(
    result: Result<Option<starling_model::bgp::BfdSettings>, ValidationError>,
) -> Option<starling_model::bgp::BfdSettings> {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static LOGGED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    match result {
        Ok(settings) => settings,
        Err(error) => {
            let message = error.to_string();
            let first = LOGGED
                .lock()
                .map(|mut logged| logged.insert(message.clone()))
                .unwrap_or(true);
            if first {
                tracing::warn!(error = %message, "BFD annotation ignored; the sessions run without BFD");
            }
            None
        }
    }
}

impl FromResource<FelixConfiguration> for FelixLayer {
    fn from_resource(config: &FelixConfiguration) -> Result<FelixLayer, ValidationError> {
        validate_felix_configuration(name_of(&config.metadata), &config.spec)
    }
}

impl FromResource<IPReservation> for IpReservation {
    fn from_resource(reservation: &IPReservation) -> Result<IpReservation, ValidationError> {
        validate_ip_reservation(name_of(&reservation.metadata), &reservation.spec)
    }
}

impl FromResource<BGPFilter> for BgpFilter {
    fn from_resource(filter: &BGPFilter) -> Result<BgpFilter, ValidationError> {
        validate_bgp_filter(name_of(&filter.metadata), &filter.spec)
    }
}
