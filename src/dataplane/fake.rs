//! An in-memory kernel for tests: it keeps links, addresses, main-table routes, neighbours and
//! FDB entries with the kernel's keying rules, records every write it is asked to make, and can
//! be told to fail chosen items (fault injection) or to lack the `ipip` module.
//!
//! Contract: behaves like the kernel where the reconciler depends on it — a route replace is
//! keyed by (destination, metric), writes naming a missing device fail, deleting a device takes
//! its addresses, routes and neighbours with it.

use std::collections::BTreeMap;

use super::kernel::{
    Address, Change, FdbEntry, ItemKey, Kernel, KernelError, Link, LinkKind, Neighbour,
    VxlanParameters,
};
use starling_calc::spec::{DeviceKind, RouteSpec};

const EEXIST: i32 = 17;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EOPNOTSUPP: i32 = 95;
const ENETUNREACH: i32 = 101;

#[derive(Debug, Clone, Default)]
pub struct FakeKernel {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<RouteSpec>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<FdbEntry>,
    /// Every change asked for, failed or not, in order.
    pub writes: Vec<Change>,
    /// Items that fail this many more times.
    pub failures: BTreeMap<ItemKey, usize>,
    /// Pretend the kernel has no `ipip` module: creating tunl0 fails.
    pub without_ipip: bool,
    /// Like the kernel, store the device a gateway route without one resolves to (the
    /// interface whose subnet holds the gateway), and refuse an unreachable gateway.
    pub resolve_devices: bool,
    next_index: u32,
}

impl FakeKernel {
    pub fn new() -> Self {
        FakeKernel {
            next_index: 1,
            ..FakeKernel::default()
        }
    }

    /// A fake kernel that reports resolved devices for routes written without one, as the
    /// real kernel does: a dump then differs from what was written.
    pub fn resolving() -> Self {
        FakeKernel {
            resolve_devices: true,
            ..FakeKernel::new()
        }
    }

    /// Adds a plain (e.g. host) interface, up.
    pub fn add_interface(&mut self, name: &str, mtu: u32, addresses: &[ipnet::IpNet]) -> u32 {
        let index = self.allocate_index();
        self.links.push(Link {
            index,
            name: name.to_string(),
            kind: LinkKind::Other(Some("veth".to_string())),
            mtu,
            admin_up: true,
            oper_up: true,
            mac: None,
        });
        for address in addresses {
            self.addresses.push(Address {
                device: name.to_string(),
                address: *address,
                link_scope: false,
            });
        }
        index
    }

    /// Makes writes to `key` fail `times` more times.
    pub fn fail(&mut self, key: ItemKey, times: usize) {
        self.failures.insert(key, times);
    }

    pub fn route_writes(&self) -> usize {
        self.writes
            .iter()
            .filter(|change| change.is_route())
            .count()
    }

    pub fn clear_writes(&mut self) {
        self.writes.clear();
    }

    fn allocate_index(&mut self) -> u32 {
        self.next_index = self.next_index.max(1);
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    fn require_device(&self, operation: &str, name: &str) -> Result<&Link, KernelError> {
        self.links
            .iter()
            .find(|link| link.name == name)
            .ok_or_else(|| KernelError::MissingDevice {
                operation: operation.to_string(),
                device: name.to_string(),
            })
    }

    fn errno(operation: &str, errno: i32, message: &str) -> KernelError {
        KernelError::Netlink {
            operation: operation.to_string(),
            errno,
            message: message.to_string(),
        }
    }

    fn apply_one(&mut self, change: &Change) -> Result<(), KernelError> {
        let operation = format!("{change:?}");
        if let Some(remaining) = self.failures.get_mut(&change.key()) {
            if *remaining > 0 {
                *remaining -= 1;
                return Err(KernelError::Injected { operation });
            }
        }
        match change {
            Change::CreateDevice(spec) => {
                if self.links.iter().any(|link| link.name == spec.name) {
                    return Err(Self::errno(&operation, EEXIST, "File exists"));
                }
                let kind = match &spec.kind {
                    DeviceKind::Ipip => {
                        if self.without_ipip {
                            return Err(Self::errno(
                                &operation,
                                EOPNOTSUPP,
                                "Operation not supported",
                            ));
                        }
                        LinkKind::Ipip
                    }
                    DeviceKind::Vxlan {
                        vni,
                        port,
                        local,
                        parent,
                    } => {
                        let parent_index = self.require_device(&operation, parent)?.index;
                        LinkKind::Vxlan(VxlanParameters {
                            vni: *vni,
                            port: *port,
                            local: Some(*local),
                            parent_index: Some(parent_index),
                            learning: false,
                        })
                    }
                };
                let index = self.allocate_index();
                self.links.push(Link {
                    index,
                    name: spec.name.clone(),
                    kind,
                    mtu: spec.mtu,
                    admin_up: false,
                    oper_up: false,
                    mac: spec.mac,
                });
            }
            Change::DeleteDevice { name } => {
                self.require_device(&operation, name)?;
                self.links.retain(|link| &link.name != name);
                self.addresses.retain(|address| &address.device != name);
                self.routes
                    .retain(|route| route.device.as_deref() != Some(name.as_str()));
                self.neighbours
                    .retain(|neighbour| &neighbour.device != name);
                self.fdb.retain(|entry| &entry.device != name);
            }
            Change::SetDevice { name, mtu, mac } => {
                self.require_device(&operation, name)?;
                if let Some(link) = self.links.iter_mut().find(|link| &link.name == name) {
                    link.mtu = *mtu;
                    link.admin_up = true;
                    link.oper_up = true;
                    if mac.is_some() {
                        link.mac = *mac;
                    }
                }
            }
            Change::AddAddress { device, address } => {
                self.require_device(&operation, device)?;
                if self
                    .addresses
                    .iter()
                    .any(|existing| &existing.device == device && existing.address == *address)
                {
                    return Err(Self::errno(&operation, EEXIST, "File exists"));
                }
                self.addresses.push(Address {
                    device: device.clone(),
                    address: *address,
                    link_scope: false,
                });
            }
            Change::DeleteAddress { device, address } => {
                let before = self.addresses.len();
                self.addresses.retain(|existing| {
                    !(&existing.device == device && existing.address == *address)
                });
                if before == self.addresses.len() {
                    return Err(Self::errno(
                        &operation,
                        99,
                        "Cannot assign requested address",
                    ));
                }
            }
            Change::ReplaceRoute(spec) => {
                if let Some(device) = &spec.device {
                    self.require_device(&operation, device)?;
                }
                let mut stored = spec.clone();
                if let (true, None, Some(gateway)) =
                    (self.resolve_devices, &stored.device, stored.gateway)
                {
                    let device = self
                        .addresses
                        .iter()
                        .find(|address| address.address.contains(&gateway))
                        .map(|address| address.device.clone())
                        .ok_or_else(|| {
                            Self::errno(&operation, ENETUNREACH, "Network is unreachable")
                        })?;
                    stored.device = Some(device);
                }
                match self.routes.iter_mut().find(|route| {
                    route.destination == stored.destination && route.metric == stored.metric
                }) {
                    Some(existing) => *existing = stored,
                    None => self.routes.push(stored),
                }
            }
            Change::DeleteRoute(spec) => {
                let before = self.routes.len();
                self.routes.retain(|route| {
                    !(route.destination == spec.destination
                        && route.metric == spec.metric
                        && route.protocol == spec.protocol)
                });
                if before == self.routes.len() {
                    return Err(Self::errno(&operation, ESRCH, "No such process"));
                }
            }
            Change::ReplaceNeighbour {
                device,
                address,
                mac,
            } => {
                self.require_device(&operation, device)?;
                self.neighbours.retain(|neighbour| {
                    !(&neighbour.device == device && neighbour.address == *address)
                });
                self.neighbours.push(Neighbour {
                    device: device.clone(),
                    address: *address,
                    mac: Some(*mac),
                    permanent: true,
                });
            }
            Change::DeleteNeighbour { device, address } => {
                let before = self.neighbours.len();
                self.neighbours.retain(|neighbour| {
                    !(&neighbour.device == device && neighbour.address == *address)
                });
                if before == self.neighbours.len() {
                    return Err(Self::errno(&operation, ENOENT, "No such file or directory"));
                }
            }
            Change::ReplaceFdb {
                device,
                mac,
                destination,
            } => {
                self.require_device(&operation, device)?;
                self.fdb
                    .retain(|entry| !(&entry.device == device && entry.mac == *mac));
                self.fdb.push(FdbEntry {
                    device: device.clone(),
                    mac: *mac,
                    destination: Some(*destination),
                    permanent: true,
                });
            }
            Change::DeleteFdb { device, mac, .. } => {
                let before = self.fdb.len();
                self.fdb
                    .retain(|entry| !(&entry.device == device && entry.mac == *mac));
                if before == self.fdb.len() {
                    return Err(Self::errno(&operation, ENOENT, "No such file or directory"));
                }
            }
        }
        Ok(())
    }
}

impl Kernel for FakeKernel {
    async fn dump_links(&mut self) -> Result<Vec<Link>, KernelError> {
        Ok(self.links.clone())
    }

    async fn dump_addresses(&mut self) -> Result<Vec<Address>, KernelError> {
        Ok(self.addresses.clone())
    }

    async fn dump_routes(&mut self) -> Result<Vec<RouteSpec>, KernelError> {
        Ok(self.routes.clone())
    }

    async fn dump_neighbours(&mut self) -> Result<Vec<Neighbour>, KernelError> {
        Ok(self.neighbours.clone())
    }

    async fn dump_fdb(&mut self) -> Result<Vec<FdbEntry>, KernelError> {
        Ok(self.fdb.clone())
    }

    async fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), KernelError>> {
        changes
            .iter()
            .map(|change| {
                self.writes.push(change.clone());
                self.apply_one(change)
            })
            .collect()
    }
}
