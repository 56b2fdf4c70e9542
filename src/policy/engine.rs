//! The policy engine: raw inputs in, compiler calls out, and (once every input kind is in
//! sync) the compiler's changes committed by the nftables dataplane.
//!
//! Contract: an object that fails to decode or validate is logged once per distinct error and
//! counted in `starling_policy_rejected_total{kind}`; a new one is absent, and an edit that
//! breaks a valid object leaves its last valid version in force (a typo must not open or close
//! traffic), as does the rest of the policy. A `Replace`
//! applies only the difference with what the kind held before, and an unchanged object changes
//! nothing. Nothing is programmed before every kind has been listed once, so a node never runs
//! a half-read policy.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use starling_policy::compile::Compiler;
use starling_policy::program::{Changes, PolicyId, PolicyKind};
use starling_policy::{k8s, model, validate};

use super::endpoints;
use super::inputs::{InputKind, InputUpdate};

/// What one input object became in the compiler (so its removal can be undone by name).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Applied {
    Policy(PolicyId),
    Tier(String),
    Profile(String),
    Endpoint(String),
}

/// The engine's view of its inputs and the compiler they feed.
pub struct Engine {
    compiler: Compiler,
    interface_prefix: String,
    expected: BTreeSet<InputKind>,
    in_sync: BTreeSet<InputKind>,
    /// The last raw object per kind and key, and what it became (if valid).
    objects: BTreeMap<(InputKind, String), (Value, Option<Applied>)>,
    /// The last rejection message per object, so each distinct error is logged once.
    rejected: BTreeMap<(InputKind, String), String>,
    rejections: u64,
}

impl Engine {
    pub fn new(node: &str, kinds: &[InputKind], interface_prefix: &str) -> Engine {
        Engine {
            compiler: Compiler::new(node),
            interface_prefix: interface_prefix.to_string(),
            expected: kinds.iter().copied().collect(),
            in_sync: BTreeSet::new(),
            objects: BTreeMap::new(),
            rejected: BTreeMap::new(),
            rejections: 0,
        }
    }

    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// True once every input kind has been listed (and not lost since).
    pub fn in_sync(&self) -> bool {
        self.expected.is_subset(&self.in_sync)
    }

    /// Objects rejected so far.
    pub fn rejections(&self) -> u64 {
        self.rejections
    }

    /// The current error of each rejected object: (kind, datastore key, message).
    pub fn rejected(&self) -> impl Iterator<Item = (InputKind, &str, &str)> {
        self.rejected
            .iter()
            .map(|((kind, key), reason)| (*kind, key.as_str(), reason.as_str()))
    }

    pub fn take_changes(&mut self) -> Changes {
        self.compiler.take_changes()
    }

    /// Applies one update; returns the kinds of objects rejected by it (for metrics).
    pub fn handle(&mut self, update: InputUpdate) -> Vec<InputKind> {
        let mut rejected = Vec::new();
        match update {
            InputUpdate::Replace { kind, objects } => {
                let gone: Vec<String> = self
                    .objects
                    .range((kind, String::new())..)
                    .take_while(|((k, _), _)| *k == kind)
                    .filter(|((_, key), _)| !objects.contains_key(key))
                    .map(|((_, key), _)| key.clone())
                    .collect();
                for key in gone {
                    self.delete(kind, &key);
                }
                for (key, object) in objects {
                    rejected.extend(self.put(kind, key, object));
                }
                self.in_sync.insert(kind);
            }
            InputUpdate::Put { kind, key, object } => rejected.extend(self.put(kind, key, object)),
            InputUpdate::Delete { kind, key } => self.delete(kind, &key),
            InputUpdate::OutOfSync { kind } => {
                self.in_sync.remove(&kind);
            }
        }
        rejected
    }

    fn put(&mut self, kind: InputKind, key: String, object: Value) -> Option<InputKind> {
        let slot = (kind, key);
        if self
            .objects
            .get(&slot)
            .is_some_and(|(old, _)| *old == object)
        {
            return None;
        }
        let result = self.apply(kind, &slot.1, &object);
        let previous = self.objects.remove(&slot).and_then(|(_, applied)| applied);
        match result {
            Ok(applied) => {
                // A renamed identity (e.g. a profile) leaves the old one behind: remove it.
                if let Some(previous) = previous.filter(|p| Some(p) != applied.as_ref()) {
                    self.unapply(&previous);
                }
                self.rejected.remove(&slot);
                self.objects.insert(slot, (object, applied));
                None
            }
            Err(reason) => {
                if self.rejected.get(&slot) != Some(&reason) {
                    let kept = if previous.is_some() {
                        "its last valid version stays in force"
                    } else {
                        "treated as absent"
                    };
                    tracing::warn!(kind = kind.name(), key = %slot.1, %reason, "invalid policy input: {kept}");
                    self.rejected.insert(slot.clone(), reason);
                }
                self.rejections += 1;
                self.objects.insert(slot, (object, previous));
                Some(kind)
            }
        }
    }

    fn delete(&mut self, kind: InputKind, key: &str) {
        let slot = (kind, key.to_string());
        self.rejected.remove(&slot);
        if let Some((_, Some(applied))) = self.objects.remove(&slot) {
            self.unapply(&applied);
        }
    }

    fn unapply(&mut self, applied: &Applied) {
        match applied {
            Applied::Policy(id) => self.compiler.remove_policy(id),
            Applied::Tier(name) => self.compiler.remove_tier(name),
            Applied::Profile(name) => self.compiler.remove_profile(name),
            Applied::Endpoint(key) => self.compiler.remove_endpoint(key),
        }
    }

    fn apply(
        &mut self,
        kind: InputKind,
        key: &str,
        object: &Value,
    ) -> Result<Option<Applied>, String> {
        let policy = |result: Result<validate::Policy, validate::ValidationError>| {
            result.map_err(|error| error.to_string())
        };
        let applied = match kind {
            InputKind::NetworkPolicy => {
                let mut policy = policy(validate::network_policy_json(object))?;
                // Calico's controllers store a converted Kubernetes policy in etcd as the
                // NetworkPolicy `knp.default.<name>`: give it the ID the Kubernetes datastore
                // path gives the same object, so both modes explain and count it alike.
                if let Some(name) = policy.id.name.strip_prefix(k8s::POLICY_NAME_PREFIX) {
                    policy.id = PolicyId {
                        kind: PolicyKind::KubernetesNetworkPolicy,
                        namespace: policy.id.namespace.clone(),
                        name: name.to_string(),
                    };
                }
                Applied::Policy(self.upsert_policy(policy))
            }
            InputKind::GlobalNetworkPolicy => {
                let policy = policy(validate::global_network_policy_json(object))?;
                Applied::Policy(self.upsert_policy(policy))
            }
            InputKind::KubernetesNetworkPolicy => {
                let policy = policy(k8s::network_policy_json(object))?;
                debug_assert_eq!(policy.id.kind, PolicyKind::KubernetesNetworkPolicy);
                Applied::Policy(self.upsert_policy(policy))
            }
            InputKind::Tier => {
                let tier = validate::tier_json(object).map_err(|e| e.to_string())?;
                let name = tier.name.clone();
                self.compiler.upsert_tier(tier);
                Applied::Tier(name)
            }
            InputKind::Profile => {
                let profile = validate::profile_json(object).map_err(|e| e.to_string())?;
                Applied::Profile(self.upsert_profile(profile))
            }
            InputKind::Namespace => {
                let namespace: model::kube::Namespace =
                    serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
                Applied::Profile(self.upsert_profile(k8s::namespace_profile(&namespace)))
            }
            InputKind::ServiceAccount => {
                let account: model::kube::ServiceAccount =
                    serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
                Applied::Profile(self.upsert_profile(k8s::service_account_profile(&account)))
            }
            InputKind::WorkloadEndpoint => {
                let endpoint = endpoints::from_workload_endpoint(key, object)?;
                let key = endpoint.key.clone();
                self.compiler.upsert_endpoint(endpoint);
                Applied::Endpoint(key)
            }
            InputKind::Pod => match endpoints::from_pod(key, object, &self.interface_prefix)? {
                Some(endpoint) => {
                    self.compiler.upsert_endpoint(endpoint);
                    Applied::Endpoint(key.to_string())
                }
                None => {
                    // Not (or no longer) an endpoint: a pod that lost its address.
                    self.compiler.remove_endpoint(key);
                    return Ok(None);
                }
            },
        };
        Ok(Some(applied))
    }

    fn upsert_policy(&mut self, policy: validate::Policy) -> PolicyId {
        let id = policy.id.clone();
        self.compiler.upsert_policy(policy);
        id
    }

    fn upsert_profile(&mut self, profile: validate::Profile) -> String {
        let name = profile.name.clone();
        self.compiler.upsert_profile(profile);
        name
    }
}
