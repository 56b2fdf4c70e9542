//! The state loop's service advertisement: Service and EndpointSlice updates go to the
//! [`ServiceAdvertiser`] instead of the cluster state (they never cause a recomputation), and
//! the per-Service routes it decides go to the speaker as per-prefix changes.

use std::collections::HashMap;

use starling_calc::services::{RouteChanges, ServiceAdvertiser, ServiceSettings};
use starling_calc::state::{Kind, Resource, Update};

use crate::bgp::speaker::SpeakerHandle;
use crate::metrics::Metrics;

pub(super) struct ServiceRoutes {
    advertiser: ServiceAdvertiser,
    metrics: Metrics,
}

fn is_service_kind(kind: Kind) -> bool {
    Kind::SERVICES.contains(&kind)
}

impl ServiceRoutes {
    pub fn new(metrics: Metrics) -> ServiceRoutes {
        ServiceRoutes {
            advertiser: ServiceAdvertiser::new(ServiceSettings::default()),
            metrics,
        }
    }

    /// Takes the update if it is about Services or EndpointSlices (`Err` gives it back).
    pub fn take(&mut self, update: Update) -> Result<RouteChanges, Update> {
        let changes = match update {
            Update::Replace { kind, objects } if is_service_kind(kind) => {
                if kind == Kind::Service {
                    let all: HashMap<_, _> = objects
                        .into_iter()
                        .filter_map(|(key, resource)| match resource {
                            Resource::Service(facts) => Some((key, *facts)),
                            _ => None,
                        })
                        .collect();
                    self.advertiser.replace_services(all)
                } else {
                    let all: HashMap<_, _> = objects
                        .into_iter()
                        .filter_map(|(key, resource)| match resource {
                            Resource::EndpointSlice(facts) => Some((key, facts)),
                            _ => None,
                        })
                        .collect();
                    self.advertiser.replace_slices(all)
                }
            }
            Update::Put { key, resource } if is_service_kind(resource.kind()) => match *resource {
                Resource::Service(facts) => self.advertiser.put_service(&key, *facts),
                Resource::EndpointSlice(facts) => self.advertiser.put_slice(&key, facts),
                _ => RouteChanges::default(),
            },
            Update::Delete { kind, key } if is_service_kind(kind) => {
                if kind == Kind::Service {
                    self.advertiser.delete_service(&key)
                } else {
                    self.advertiser.delete_slice(&key)
                }
            }
            // A lost watch keeps what is advertised until the relist says otherwise.
            Update::OutOfSync { kind } if is_service_kind(kind) => RouteChanges::default(),
            other => return Err(other),
        };
        self.count();
        Ok(changes)
    }

    /// A new BGPConfiguration or local node: re-evaluates every Service if the settings moved.
    pub fn set_settings(&mut self, settings: ServiceSettings) -> RouteChanges {
        self.metrics
            .service_routes
            .with_label_values(&["ranges"])
            .set(settings.global_routes().len() as i64);
        let changes = self.advertiser.set_settings(settings);
        self.count();
        changes
    }

    /// Everything advertised now, for a speaker that just started.
    pub fn all(&self) -> RouteChanges {
        RouteChanges {
            added: self.advertiser.routes().copied().collect(),
            removed: Vec::new(),
        }
    }

    fn count(&self) {
        self.metrics
            .service_routes
            .with_label_values(&["services"])
            .set(self.advertiser.route_count() as i64);
    }
}

/// Sends the changes to the speaker when there is one (a speaker started later gets
/// [`ServiceRoutes::all`]).
pub(super) fn send(speaker: Option<&SpeakerHandle>, changes: RouteChanges) {
    if let Some(speaker) = speaker {
        speaker.advertise_services(changes);
    }
}
