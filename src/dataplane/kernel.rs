//! The narrow kernel interface the reconciler talks to, and the plain types crossing it.
//!
//! Contract: a [`Kernel`] dumps the objects of the current network namespace (main routing
//! table only, devices named rather than numbered) and applies a batch of [`Change`]s, returning
//! one result per change in order; a failed change never prevents the others in the batch.
//! Implementations: [`super::netlink::NetlinkKernel`] (rtnetlink) and [`super::fake::FakeKernel`].

use std::future::Future;
use std::net::IpAddr;

use ipnet::IpNet;

use starling_calc::spec::{DeviceSpec, RouteSpec};
use starling_model::MacAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanParameters {
    pub vni: u32,
    pub port: u16,
    pub local: Option<IpAddr>,
    pub parent_index: Option<u32>,
    pub learning: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Vxlan(VxlanParameters),
    Ipip,
    /// Any other kind (`veth`, `dummy`, ...) or none reported.
    Other(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub admin_up: bool,
    pub oper_up: bool,
    pub mac: Option<MacAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    pub device: String,
    pub address: IpNet,
    /// Link-local scope (IPv6 fe80::/64): never ours to remove.
    pub link_scope: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbour {
    pub device: String,
    pub address: IpAddr,
    pub mac: Option<MacAddr>,
    pub permanent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    pub device: String,
    pub mac: MacAddr,
    pub destination: Option<IpAddr>,
    pub permanent: bool,
}

/// Everything the reconciler reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<RouteSpec>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<FdbEntry>,
}

impl Snapshot {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|link| link.name == name)
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateDevice(DeviceSpec),
    DeleteDevice {
        name: String,
    },
    /// Set MTU and bring the device up (the MAC too when given).
    SetDevice {
        name: String,
        mtu: u32,
        mac: Option<MacAddr>,
    },
    AddAddress {
        device: String,
        address: IpNet,
    },
    DeleteAddress {
        device: String,
        address: IpNet,
    },
    ReplaceRoute(RouteSpec),
    DeleteRoute(RouteSpec),
    ReplaceNeighbour {
        device: String,
        address: IpAddr,
        mac: MacAddr,
    },
    DeleteNeighbour {
        device: String,
        address: IpAddr,
    },
    ReplaceFdb {
        device: String,
        mac: MacAddr,
        destination: IpAddr,
    },
    DeleteFdb {
        device: String,
        mac: MacAddr,
        destination: Option<IpAddr>,
    },
}

/// Identity of the object a change touches (for retry bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKey {
    Device(String),
    Address(String, IpNet),
    Route(IpNet, u32),
    Neighbour(String, IpAddr),
    Fdb(String, MacAddr),
}

impl Change {
    pub fn key(&self) -> ItemKey {
        match self {
            Change::CreateDevice(spec) => ItemKey::Device(spec.name.clone()),
            Change::DeleteDevice { name } | Change::SetDevice { name, .. } => {
                ItemKey::Device(name.clone())
            }
            Change::AddAddress { device, address } | Change::DeleteAddress { device, address } => {
                ItemKey::Address(device.clone(), *address)
            }
            Change::ReplaceRoute(spec) | Change::DeleteRoute(spec) => {
                ItemKey::Route(spec.destination, spec.metric)
            }
            Change::ReplaceNeighbour {
                device, address, ..
            }
            | Change::DeleteNeighbour { device, address } => {
                ItemKey::Neighbour(device.clone(), *address)
            }
            Change::ReplaceFdb { device, mac, .. } | Change::DeleteFdb { device, mac, .. } => {
                ItemKey::Fdb(device.clone(), *mac)
            }
        }
    }

    pub fn is_route(&self) -> bool {
        matches!(self, Change::ReplaceRoute(_) | Change::DeleteRoute(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("{operation}: kernel answered {message} (errno {errno})")]
    Netlink {
        operation: String,
        errno: i32,
        message: String,
    },
    #[error("{operation}: device {device:?} does not exist")]
    MissingDevice { operation: String, device: String },
    #[error("{operation}: dump kept being interrupted by concurrent changes")]
    DumpInterrupted { operation: String },
    #[error("{operation}: {message}")]
    Io { operation: String, message: String },
    #[error("{operation}: injected failure")]
    Injected { operation: String },
}

impl KernelError {
    pub fn is_missing_device(&self) -> bool {
        matches!(self, KernelError::MissingDevice { .. })
    }
}

/// The kernel as the reconciler needs it.
pub trait Kernel {
    fn dump_links(&mut self) -> impl Future<Output = Result<Vec<Link>, KernelError>> + Send;
    fn dump_addresses(&mut self) -> impl Future<Output = Result<Vec<Address>, KernelError>> + Send;
    /// Main-table unicast and blackhole routes of both families.
    fn dump_routes(&mut self) -> impl Future<Output = Result<Vec<RouteSpec>, KernelError>> + Send;
    /// IPv4 and IPv6 neighbours.
    fn dump_neighbours(
        &mut self,
    ) -> impl Future<Output = Result<Vec<Neighbour>, KernelError>> + Send;
    /// AF_BRIDGE forwarding entries.
    fn dump_fdb(&mut self) -> impl Future<Output = Result<Vec<FdbEntry>, KernelError>> + Send;
    /// Applies every change, in order; one result per change.
    fn apply(
        &mut self,
        changes: &[Change],
    ) -> impl Future<Output = Vec<Result<(), KernelError>>> + Send;

    fn dump(&mut self) -> impl Future<Output = Result<Snapshot, KernelError>> + Send
    where
        Self: Send,
    {
        async move {
            Ok(Snapshot {
                links: self.dump_links().await?,
                addresses: self.dump_addresses().await?,
                routes: self.dump_routes().await?,
                neighbours: self.dump_neighbours().await?,
                fdb: self.dump_fdb().await?,
            })
        }
    }
}

/// Whether a route read from the kernel is the wanted one. A route wanted without a device
/// (a BGP next hop: the kernel picks the interface) comes back naming the device the kernel
/// resolved, which is not a difference.
pub fn route_matches(kernel: &RouteSpec, wanted: &RouteSpec) -> bool {
    let RouteSpec {
        destination,
        route_type,
        gateway,
        device,
        onlink,
        scope,
        metric,
        mtu,
        protocol,
    } = wanted;
    (device.is_none() || *device == kernel.device)
        && *destination == kernel.destination
        && *route_type == kernel.route_type
        && *gateway == kernel.gateway
        && *onlink == kernel.onlink
        && *scope == kernel.scope
        && *metric == kernel.metric
        && *mtu == kernel.mtu
        && *protocol == kernel.protocol
}
