//! Service address advertisement (reference §6.7), incremental and pure.
//!
//! Two kinds of routes leave a node for Services:
//! * **global** ranges, from the BGPConfiguration alone: every `serviceClusterIPs`,
//!   `serviceExternalIPs` and (with aggregation on) `serviceLoadBalancerIPs` CIDR, advertised by
//!   every node that is not excluded from load balancers ([`ServiceSettings::global_routes`]);
//! * **per-service** /32s and /128s ([`ServiceAdvertiser`]), which depend on Services and
//!   EndpointSlices: a Service with `externalTrafficPolicy: Local` is advertised (cluster IP,
//!   allowed external IPs, allowed load-balancer IPs) only by nodes holding one of its ready
//!   endpoints; `internalTrafficPolicy: Local` does the same for its cluster IPs alone; with
//!   `Cluster` policy a load-balancer or external IP matched by a single-address entry (or any
//!   load-balancer IP once `serviceLoadBalancerAggregation: Disabled`) is advertised by every node.
//!
//! Learned copies of any service range are never installed ([`ServiceSettings::reject_cidrs`]).
//! Each event costs O(that Service): the advertiser keeps, per Service, the routes it asked
//! for and a reference count per route (two Services may share an external IP).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use starling_model::{BgpConfig, CalicoNode};

/// The node label that keeps a node out of service advertisement (Kubernetes' well-known one).
pub const EXCLUDE_FROM_LOAD_BALANCERS_LABEL: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// What the BGPConfiguration and the local node say about service advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSettings {
    pub cluster_cidrs: Vec<IpNet>,
    pub external_cidrs: Vec<IpNet>,
    pub load_balancer_cidrs: Vec<IpNet>,
    /// `serviceLoadBalancerAggregation: Enabled` (the default).
    pub load_balancer_aggregation: bool,
    /// The node carries [`EXCLUDE_FROM_LOAD_BALANCERS_LABEL`]`=true`: it advertises nothing.
    pub excluded: bool,
}

impl ServiceSettings {
    pub fn new(config: &BgpConfig, local: &CalicoNode) -> ServiceSettings {
        ServiceSettings {
            cluster_cidrs: config.service_cluster_ips.clone(),
            external_cidrs: config.service_external_ips.clone(),
            load_balancer_cidrs: config.service_load_balancer_ips.clone(),
            load_balancer_aggregation: config.service_load_balancer_aggregation,
            excluded: local
                .labels
                .get(EXCLUDE_FROM_LOAD_BALANCERS_LABEL)
                .is_some_and(|value| value.eq_ignore_ascii_case("true")),
        }
    }

    /// Whether Services and EndpointSlices matter at all (nothing to advertise otherwise).
    pub fn any_configured(&self) -> bool {
        !self.cluster_cidrs.is_empty()
            || !self.external_cidrs.is_empty()
            || !self.load_balancer_cidrs.is_empty()
    }

    /// The ranges this node advertises whatever the Services are.
    pub fn global_routes(&self) -> Vec<IpNet> {
        if self.excluded {
            return Vec::new();
        }
        let load_balancer = self
            .load_balancer_cidrs
            .iter()
            .filter(|_| self.load_balancer_aggregation);
        let mut routes: Vec<IpNet> = self
            .cluster_cidrs
            .iter()
            .chain(&self.external_cidrs)
            .chain(load_balancer)
            .map(IpNet::trunc)
            .collect();
        routes.sort();
        routes.dedup();
        routes
    }

    /// Ranges whose learned copies never reach the kernel: this node advertises them itself
    /// (or, excluded, would), and traffic to them is the service proxy's business.
    pub fn reject_cidrs(&self) -> Vec<IpNet> {
        let mut cidrs: Vec<IpNet> = self
            .cluster_cidrs
            .iter()
            .chain(&self.external_cidrs)
            .chain(&self.load_balancer_cidrs)
            .map(IpNet::trunc)
            .collect();
        cidrs.sort();
        cidrs.dedup();
        cidrs
    }

    fn is_single_entry(cidrs: &[IpNet], address: IpAddr) -> bool {
        cidrs
            .iter()
            .any(|cidr| cidr.prefix_len() == cidr.max_prefix_len() && cidr.contains(&address))
    }

    fn allowed(cidrs: &[IpNet], address: IpAddr) -> bool {
        cidrs.iter().any(|cidr| cidr.contains(&address))
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    /// ExternalName and anything unknown: never advertised.
    Other,
}

/// The parts of a Service that decide its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (empty for headless Services).
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`, and the deprecated `spec.loadBalancerIP`.
    pub load_balancer_ips: Vec<IpAddr>,
    pub external_traffic_local: bool,
    pub internal_traffic_local: bool,
}

/// What one EndpointSlice says about this node: ready endpoints here, by family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalEndpoints {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl LocalEndpoints {
    fn has(self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        }
    }
}

/// One EndpointSlice, reduced to what this node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceFacts {
    /// `namespace/name` of the Service (the `kubernetes.io/service-name` label).
    pub service: String,
    pub local: LocalEndpoints,
}

/// Per-prefix changes to what this node advertises for Services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteChanges {
    pub added: Vec<IpNet>,
    pub removed: Vec<IpNet>,
}

impl RouteChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

fn host_route(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

/// Services and EndpointSlices in, per-service routes out (see the module documentation).
#[derive(Debug, Default)]
pub struct ServiceAdvertiser {
    settings: ServiceSettings,
    services: HashMap<String, ServiceFacts>,
    slices: HashMap<String, SliceFacts>,
    /// Per Service: how many of its slices have a ready local endpoint, per family.
    local_slices: HashMap<String, (u32, u32)>,
    advertised: HashMap<String, BTreeSet<IpNet>>,
    references: BTreeMap<IpNet, u32>,
}

impl ServiceAdvertiser {
    pub fn new(settings: ServiceSettings) -> ServiceAdvertiser {
        ServiceAdvertiser {
            settings,
            ..ServiceAdvertiser::default()
        }
    }

    /// Every per-service route currently advertised.
    pub fn routes(&self) -> impl Iterator<Item = &IpNet> {
        self.references.keys()
    }

    pub fn route_count(&self) -> usize {
        self.references.len()
    }

    /// The routes one Service asks for now.
    pub fn routes_of(&self, service: &str) -> BTreeSet<IpNet> {
        self.advertised.get(service).cloned().unwrap_or_default()
    }

    /// A new configuration re-evaluates every Service (configuration changes are rare).
    pub fn set_settings(&mut self, settings: ServiceSettings) -> RouteChanges {
        if settings == self.settings {
            return RouteChanges::default();
        }
        self.settings = settings;
        let mut changes = RouteChanges::default();
        let keys: Vec<String> = self.services.keys().cloned().collect();
        for key in keys {
            self.evaluate(&key, &mut changes);
        }
        changes
    }

    pub fn put_service(&mut self, key: &str, facts: ServiceFacts) -> RouteChanges {
        let mut changes = RouteChanges::default();
        if self.services.get(key) != Some(&facts) {
            self.services.insert(key.to_string(), facts);
            self.evaluate(key, &mut changes);
        }
        changes
    }

    pub fn delete_service(&mut self, key: &str) -> RouteChanges {
        let mut changes = RouteChanges::default();
        if self.services.remove(key).is_some() {
            self.evaluate(key, &mut changes);
        }
        changes
    }

    pub fn put_slice(&mut self, key: &str, facts: SliceFacts) -> RouteChanges {
        let mut changes = RouteChanges::default();
        if self.slices.get(key) == Some(&facts) {
            return changes;
        }
        let old = self.slices.insert(key.to_string(), facts.clone());
        if let Some(old) = &old {
            self.count_slice(old, false);
            if old.service != facts.service {
                self.evaluate(&old.service, &mut changes);
            }
        }
        self.count_slice(&facts, true);
        self.evaluate(&facts.service, &mut changes);
        changes
    }

    pub fn delete_slice(&mut self, key: &str) -> RouteChanges {
        let mut changes = RouteChanges::default();
        if let Some(old) = self.slices.remove(key) {
            self.count_slice(&old, false);
            self.evaluate(&old.service, &mut changes);
        }
        changes
    }

    /// A relist of Services: the new content replaces the old; only differences cost work.
    pub fn replace_services(&mut self, all: HashMap<String, ServiceFacts>) -> RouteChanges {
        self.replace_all(
            all,
            |advertiser| &advertiser.services,
            ServiceAdvertiser::delete_service,
            ServiceAdvertiser::put_service,
        )
    }

    /// A relist of EndpointSlices, like [`ServiceAdvertiser::replace_services`].
    pub fn replace_slices(&mut self, all: HashMap<String, SliceFacts>) -> RouteChanges {
        self.replace_all(
            all,
            |advertiser| &advertiser.slices,
            ServiceAdvertiser::delete_slice,
            ServiceAdvertiser::put_slice,
        )
    }

    /// One relist of either kind: deletes what `all` lacks, puts the rest, and reports the net
    /// change (the per-call changes of `delete`/`put` are superseded by the snapshot diff).
    fn replace_all<Facts>(
        &mut self,
        all: HashMap<String, Facts>,
        known: fn(&ServiceAdvertiser) -> &HashMap<String, Facts>,
        delete: fn(&mut ServiceAdvertiser, &str) -> RouteChanges,
        put: fn(&mut ServiceAdvertiser, &str, Facts) -> RouteChanges,
    ) -> RouteChanges {
        let before = self.snapshot();
        let gone: Vec<String> = known(self)
            .keys()
            .filter(|key| !all.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            delete(self, &key);
        }
        for (key, facts) in all {
            put(self, &key, facts);
        }
        self.changes_since(&before)
    }

    fn snapshot(&self) -> BTreeSet<IpNet> {
        self.references.keys().copied().collect()
    }

    /// What changed since `before`: a route withdrawn and re-added within a relist is no change.
    fn changes_since(&self, before: &BTreeSet<IpNet>) -> RouteChanges {
        let now = self.snapshot();
        RouteChanges {
            added: now.difference(before).copied().collect(),
            removed: before.difference(&now).copied().collect(),
        }
    }

    fn count_slice(&mut self, slice: &SliceFacts, add: bool) {
        let counts = self.local_slices.entry(slice.service.clone()).or_default();
        let step = |count: &mut u32, has: bool| {
            if has {
                *count = if add {
                    *count + 1
                } else {
                    count.saturating_sub(1)
                };
            }
        };
        step(&mut counts.0, slice.local.ipv4);
        step(&mut counts.1, slice.local.ipv6);
        if *counts == (0, 0) {
            self.local_slices.remove(&slice.service);
        }
    }

    fn local_endpoints(&self, service: &str) -> LocalEndpoints {
        let (ipv4, ipv6) = self.local_slices.get(service).copied().unwrap_or_default();
        LocalEndpoints {
            ipv4: ipv4 > 0,
            ipv6: ipv6 > 0,
        }
    }

    /// The routes a Service asks this node to advertise (Calico's `advertiseThisService` and
    /// `getAllRoutesForService`, per address rather than per Service).
    fn wanted(&self, service: &str) -> BTreeSet<IpNet> {
        let mut routes = BTreeSet::new();
        let settings = &self.settings;
        let Some(facts) = self.services.get(service) else {
            return routes;
        };
        if settings.excluded
            || facts.service_type == ServiceType::Other
            || facts.cluster_ips.is_empty()
        {
            return routes;
        }
        let local = self.local_endpoints(service);
        if !settings.cluster_cidrs.is_empty()
            && (facts.external_traffic_local || facts.internal_traffic_local)
        {
            routes.extend(
                facts
                    .cluster_ips
                    .iter()
                    .filter(|address| local.has(**address))
                    .map(|address| host_route(*address)),
            );
        }
        for address in &facts.external_ips {
            if !ServiceSettings::allowed(&settings.external_cidrs, *address) {
                continue;
            }
            let everywhere = !facts.external_traffic_local
                && ServiceSettings::is_single_entry(&settings.external_cidrs, *address);
            if everywhere || (facts.external_traffic_local && local.has(*address)) {
                routes.insert(host_route(*address));
            }
        }
        if facts.service_type == ServiceType::LoadBalancer {
            for address in &facts.load_balancer_ips {
                if !ServiceSettings::allowed(&settings.load_balancer_cidrs, *address) {
                    continue;
                }
                let everywhere = !facts.external_traffic_local
                    && (!settings.load_balancer_aggregation
                        || ServiceSettings::is_single_entry(
                            &settings.load_balancer_cidrs,
                            *address,
                        ));
                if everywhere || (facts.external_traffic_local && local.has(*address)) {
                    routes.insert(host_route(*address));
                }
            }
        }
        routes
    }

    fn evaluate(&mut self, service: &str, changes: &mut RouteChanges) {
        let wanted = self.wanted(service);
        let old = if wanted.is_empty() {
            self.advertised.remove(service).unwrap_or_default()
        } else {
            self.advertised
                .insert(service.to_string(), wanted.clone())
                .unwrap_or_default()
        };
        for route in old.difference(&wanted) {
            if let Some(count) = self.references.get_mut(route) {
                *count -= 1;
                if *count == 0 {
                    self.references.remove(route);
                    changes.removed.push(*route);
                }
            }
        }
        for route in wanted.difference(&old) {
            let count = self.references.entry(*route).or_insert(0);
            *count += 1;
            if *count == 1 {
                changes.added.push(*route);
            }
        }
    }
}
