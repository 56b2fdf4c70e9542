//! Benchmark (not a test): install 10 000 routes into an empty namespace with the reconciler
//! and, in the same run, with `ip -batch`; then time a no-op resync with the 10 000 routes
//! present. Needs root (it creates and removes its own namespace); prints and exits otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use starling::dataplane::netlink::NetlinkKernel;
use starling::dataplane::reconcile::Reconciler;
use starling::netns;
use starling_calc::spec::{Desired, DesiredRoute, RouteClass, RouteScope, RouteSpec, RouteType};

const ROUTES: u32 = 10_000;
const RESYNC_RUNS: usize = 5;

fn ip(namespace: &str, args: &[&str]) {
    let status = Command::new("ip")
        .arg("-n")
        .arg(namespace)
        .args(args)
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args:?}");
}

fn destination(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + index)
}

fn desired() -> Desired {
    let mut desired = Desired::empty(81);
    desired.allow_deletions = true;
    let routes: BTreeMap<IpNet, DesiredRoute> = (0..ROUTES)
        .map(|index| {
            let destination = IpNet::from(IpAddr::V4(destination(index)));
            let route = DesiredRoute {
                spec: RouteSpec {
                    destination,
                    route_type: RouteType::Unicast,
                    gateway: Some("192.168.50.2".parse().expect("literal")),
                    device: Some("eth0".to_string()),
                    onlink: true,
                    scope: RouteScope::Universe,
                    metric: 0,
                    mtu: None,
                    protocol: 81,
                },
                class: RouteClass::RemoteBlockNoEncap,
            };
            (destination, route)
        })
        .collect();
    desired.routes = routes;
    desired
}

fn count_routes(namespace: &str) -> usize {
    let output = Command::new("ip")
        .args(["-n", namespace, "route", "show", "proto", "81"])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&output.stdout).lines().count()
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        println!("dataplane_routes: skipped, needs root to create a network namespace");
        return;
    }
    let namespace = netns::create(&netns::unique_name("st-bench")).expect("create namespace");
    let ns = namespace.name();
    ip(ns, &["link", "set", "lo", "up"]);
    ip(
        ns,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
        ],
    );
    ip(ns, &["addr", "add", "192.168.50.1/24", "dev", "eth0"]);
    ip(ns, &["link", "set", "eth0", "up"]);
    ip(ns, &["link", "set", "eth0peer", "up"]);
    let desired = desired();

    // `ip -batch` first, into the empty namespace.
    let batch_path = std::env::temp_dir().join(format!("{ns}.batch"));
    let mut batch = std::fs::File::create(&batch_path).expect("batch file");
    for index in 0..ROUTES {
        writeln!(
            batch,
            "route add {}/32 via 192.168.50.2 dev eth0 onlink proto 81",
            destination(index)
        )
        .expect("write");
    }
    drop(batch);
    let started = Instant::now();
    ip(ns, &["-batch", batch_path.to_str().expect("utf-8 path")]);
    let ip_batch = started.elapsed();
    let _ = std::fs::remove_file(&batch_path);
    assert_eq!(count_routes(ns), ROUTES as usize);
    ip(ns, &["route", "flush", "proto", "81"]);
    assert_eq!(count_routes(ns), 0);

    let (install, resyncs) = netns::run_async_in(ns, || async {
        let mut kernel = NetlinkKernel::connect().expect("netlink");
        let started = Instant::now();
        let report = Reconciler::default()
            .reconcile(&mut kernel, &desired, Instant::now())
            .await
            .expect("reconcile");
        let install = started.elapsed();
        assert!(
            report.converged() && report.route_writes == ROUTES as usize,
            "{report:?}"
        );
        let mut resyncs: Vec<Duration> = Vec::new();
        for _ in 0..RESYNC_RUNS {
            let started = Instant::now();
            let report = Reconciler::default()
                .reconcile(&mut kernel, &desired, Instant::now())
                .await
                .expect("resync");
            resyncs.push(started.elapsed());
            assert_eq!(report.writes, 0);
        }
        resyncs.sort();
        (install, resyncs)
    })
    .expect("run in namespace");
    assert_eq!(count_routes(ns), ROUTES as usize);

    println!("dataplane_routes: {ROUTES} routes into an empty namespace");
    println!(
        "  ip -batch:              {:>8.1} ms",
        ip_batch.as_secs_f64() * 1e3
    );
    println!(
        "  starling reconcile:     {:>8.1} ms",
        install.as_secs_f64() * 1e3
    );
    println!(
        "  no-op resync (median of {RESYNC_RUNS}): {:>8.1} ms (min {:.1}, max {:.1})",
        resyncs[RESYNC_RUNS / 2].as_secs_f64() * 1e3,
        resyncs[0].as_secs_f64() * 1e3,
        resyncs[RESYNC_RUNS - 1].as_secs_f64() * 1e3
    );
}
