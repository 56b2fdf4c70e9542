//! The dataplane edge of the daemon: the driver on a thread of its own (current-thread
//! runtime, in the daemon's network namespace), the netlink monitor, the host-interface list
//! the computation needs, and a [`Kernel`] wrapper that feeds the apply metrics.
//!
//! Contract: [`spawn`] returns at once; the thread ends when the desired-state sender is
//! dropped, leaving every kernel object in place (a restart must not blackhole traffic).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::dataplane::driver::{self, DriverOptions, DriverStatus};
use crate::dataplane::fake::FakeKernel;
use crate::dataplane::kernel::{Address, Change, FdbEntry, Kernel, KernelError, Link, Neighbour};
use crate::dataplane::monitor;
use crate::dataplane::netlink::NetlinkKernel;
use crate::metrics::Metrics;
use crate::route_deltas::DeltaReceiver;
use starling_calc::spec::RouteSpec;
use starling_calc::spec::{Desired, HostInterface};

/// Which kernel the driver talks to.
pub enum KernelMode {
    Netlink,
    /// Tests: an in-memory kernel; its plain links are the host interfaces.
    Fake(Box<FakeKernel>),
}

/// Driver settings the daemon chooses.
pub struct DataplaneOptions {
    pub kernel: KernelMode,
    pub mtu_file: Option<PathBuf>,
    pub sysctl_root: Option<PathBuf>,
    pub manage_nat: bool,
    pub resync_interval: Duration,
    /// Learned BGP routes, as per-prefix deltas from the speaker (BIRD backend only).
    pub learned: Option<DeltaReceiver>,
}

/// What the daemon keeps of the running dataplane.
pub struct DataplaneHandle {
    pub status: watch::Receiver<DriverStatus>,
    pub host_interfaces: watch::Receiver<Vec<HostInterface>>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Times and counts every batch of kernel writes.
pub struct MeasuredKernel<K> {
    inner: K,
    metrics: Metrics,
}

fn object_of(change: &Change) -> &'static str {
    match change {
        Change::CreateDevice(_) | Change::DeleteDevice { .. } | Change::SetDevice { .. } => {
            "device"
        }
        Change::AddAddress { .. } | Change::DeleteAddress { .. } => "address",
        Change::ReplaceRoute(_) | Change::DeleteRoute(_) => "route",
        Change::ReplaceNeighbour { .. } | Change::DeleteNeighbour { .. } => "neighbour",
        Change::ReplaceFdb { .. } | Change::DeleteFdb { .. } => "fdb",
    }
}

impl<K: Kernel + Send> Kernel for MeasuredKernel<K> {
    async fn dump_links(&mut self) -> Result<Vec<Link>, KernelError> {
        self.inner.dump_links().await
    }
    async fn dump_addresses(&mut self) -> Result<Vec<Address>, KernelError> {
        self.inner.dump_addresses().await
    }
    async fn dump_routes(&mut self) -> Result<Vec<RouteSpec>, KernelError> {
        self.inner.dump_routes().await
    }
    async fn dump_neighbours(&mut self) -> Result<Vec<Neighbour>, KernelError> {
        self.inner.dump_neighbours().await
    }
    async fn dump_fdb(&mut self) -> Result<Vec<FdbEntry>, KernelError> {
        self.inner.dump_fdb().await
    }
    async fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), KernelError>> {
        let started = Instant::now();
        let results = self.inner.apply(changes).await;
        self.metrics
            .dataplane_apply_seconds
            .observe(started.elapsed().as_secs_f64());
        for (change, result) in changes.iter().zip(&results) {
            self.metrics
                .dataplane_writes_total
                .with_label_values(&[object_of(change)])
                .inc();
            if result.is_err() {
                self.metrics.dataplane_apply_failures_total.inc();
            }
        }
        results
    }
}

/// Host interfaces from a kernel dump (name, addresses, MTU, state).
pub fn host_interfaces(links: &[Link], addresses: &[Address]) -> Vec<HostInterface> {
    links
        .iter()
        .map(|link| HostInterface {
            name: link.name.clone(),
            addresses: addresses
                .iter()
                .filter(|address| address.device == link.name && !address.link_scope)
                .map(|address| address.address)
                .collect(),
            mtu: link.mtu,
            oper_up: link.oper_up,
        })
        .collect()
}

/// Starts the dataplane thread.
pub fn spawn(
    options: DataplaneOptions,
    desired: watch::Receiver<Arc<Desired>>,
    route_protocol: u8,
    metrics: Metrics,
) -> std::io::Result<DataplaneHandle> {
    let (status_sender, status) = watch::channel(DriverStatus::default());
    let initial_interfaces = match &options.kernel {
        KernelMode::Fake(kernel) => host_interfaces(&kernel.links, &kernel.addresses),
        KernelMode::Netlink => Vec::new(),
    };
    let (interfaces_sender, host_interfaces) = watch::channel(initial_interfaces);
    let driver_options = DriverOptions {
        resync_interval: options.resync_interval,
        manage_nat: options.manage_nat,
        sysctl_root: options.sysctl_root.clone(),
        mtu_file: options.mtu_file.clone(),
        ..DriverOptions::default()
    };
    let thread = super::spawn_runtime_thread("dataplane", move || async move {
        match options.kernel {
            KernelMode::Fake(kernel) => {
                // No monitor: the fake kernel changes only through the driver.
                let (_kicks_sender, kicks) = mpsc::channel(1);
                let kernel = MeasuredKernel {
                    inner: *kernel,
                    metrics,
                };
                driver::run(
                    kernel,
                    desired,
                    kicks,
                    options.learned,
                    driver_options,
                    status_sender,
                )
                .await;
            }
            KernelMode::Netlink => {
                run_netlink(
                    desired,
                    options.learned,
                    driver_options,
                    status_sender,
                    interfaces_sender,
                    route_protocol,
                    metrics,
                )
                .await
            }
        }
    })?;
    Ok(DataplaneHandle {
        status,
        host_interfaces,
        thread,
    })
}

async fn run_netlink(
    desired: watch::Receiver<Arc<Desired>>,
    learned: Option<DeltaReceiver>,
    options: DriverOptions,
    status: watch::Sender<DriverStatus>,
    interfaces: watch::Sender<Vec<HostInterface>>,
    route_protocol: u8,
    metrics: Metrics,
) {
    let kernel = match NetlinkKernel::connect() {
        Ok(kernel) => kernel,
        Err(error) => {
            tracing::error!(%error, "no netlink connection: the dataplane is not programmed");
            return;
        }
    };
    // One monitor feeds both the driver and the host-interface list.
    let (driver_kicks_sender, driver_kicks) = mpsc::channel(1);
    let (interface_kicks_sender, mut interface_kicks) = mpsc::channel::<()>(1);
    match monitor::spawn(route_protocol) {
        Ok(mut kicks) => {
            tokio::spawn(async move {
                while kicks.recv().await.is_some() {
                    let _ = driver_kicks_sender.try_send(());
                    let _ = interface_kicks_sender.try_send(());
                }
            });
        }
        Err(error) => tracing::warn!(%error, "no netlink monitor: drift is repaired on resync"),
    }
    tokio::spawn(async move {
        let mut reader = match NetlinkKernel::connect() {
            Ok(kernel) => kernel,
            Err(error) => {
                tracing::error!(%error, "cannot read host interfaces");
                return;
            }
        };
        loop {
            match (reader.dump_links().await, reader.dump_addresses().await) {
                (Ok(links), Ok(addresses)) => {
                    let list = host_interfaces(&links, &addresses);
                    interfaces.send_if_modified(|current| {
                        let changed = *current != list;
                        if changed {
                            *current = list;
                        }
                        changed
                    });
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "reading host interfaces failed")
                }
            }
            tokio::select! {
                kick = interface_kicks.recv() => if kick.is_none() {
                    // No monitor: fall back to polling.
                    tokio::time::sleep(Duration::from_secs(10)).await;
                },
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            if interfaces.is_closed() {
                return;
            }
        }
    });
    let kernel = MeasuredKernel {
        inner: kernel,
        metrics,
    };
    driver::run(kernel, desired, driver_kicks, learned, options, status).await;
}
