//! Benchmark (not a test): IPAM assignments against a real etcd started on loopback.
//!
//! Reports assignments per second and per-assignment p50/p99 latency for one node assigning
//! alone, and for two nodes contending for the same pool. Run with
//! `cargo bench --bench ipam_etcd`; `IPAM_BENCH_ASSIGNMENTS` sets the count per node (default 1000).
//! etcd keeps its data on tmpfs when /dev/shm exists, so the numbers measure Starling and etcd's
//! request path, not the disk's fsync latency.

use std::time::{Duration, Instant};

use starling::datastore::etcd::EtcdStore;
use starling_ipam::allocator::{Allocator, AssignRequest};
use starling_ipam::pools::IpFamily;
use starling_ipam::records::IpamConfig;
use starling_ipam::release;

#[path = "../tests/ipam_support/mod.rs"]
mod ipam_support;
use ipam_support::etcd::{EtcdServer, ETCD_BINARY};
use ipam_support::{attributes, pool, t0};

struct Outcome {
    latencies: Vec<Duration>,
    wall: Duration,
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, outcome: &mut Outcome) {
    outcome.latencies.sort();
    let count = outcome.latencies.len();
    println!(
        "{name:<28} {count:>6} assignments  {:>8.1} assignments/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        count as f64 / outcome.wall.as_secs_f64(),
        percentile(&outcome.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&outcome.latencies, 0.99).as_secs_f64() * 1e3,
    );
}

async fn run_node(
    store: EtcdStore,
    node: &'static str,
    count: usize,
    pools: Vec<starling_model::IpPool>,
) -> Vec<Duration> {
    let allocator = Allocator::new(store, node);
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let request = AssignRequest {
            handle_id: format!("k8s-pod-network.{node}-{i}"),
            attributes: attributes(node, &format!("pod-{i}")),
            family: IpFamily::V4,
            count: 1,
            pools: pools.clone(),
            reserved: Vec::new(),
            config: IpamConfig::default(),
            max_blocks_per_host: 0,
            now: t0(),
        };
        let started = Instant::now();
        if let Err(error) = allocator.auto_assign(&request).await {
            eprintln!("{node}: assignment {i} failed: {error}");
            continue;
        }
        latencies.push(started.elapsed());
    }
    latencies
}

async fn release_all(store: &EtcdStore, nodes: &[&str], count: usize) -> Duration {
    let started = Instant::now();
    for node in nodes {
        for i in 0..count {
            if let Err(error) =
                release::release_by_handle(store, &format!("k8s-pod-network.{node}-{i}")).await
            {
                eprintln!("release failed: {error}");
            }
        }
    }
    started.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    let count: usize = std::env::var("IPAM_BENCH_ASSIGNMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        if !std::path::Path::new(ETCD_BINARY).exists() {
            eprintln!(
                "ipam_etcd benchmark: {ETCD_BINARY} is not installed (apt-get install etcd-server)"
            );
            return;
        }
        let (_server, store) = EtcdServer::start().await;
        // Single node: a /16 pool in /26 blocks; the node claims a new block every 64 assignments.
        let pools = vec![pool("bench-single", "10.128.0.0/16", 26)];
        let started = Instant::now();
        let latencies = run_node(store.clone(), "solo", count, pools).await;
        let mut single = Outcome {
            latencies,
            wall: started.elapsed(),
        };
        report("single node", &mut single);
        let released = release_all(&store, &["solo"], count).await;
        println!(
            "{:<28} {count:>6} releases     {:>8.1} releases/s",
            "single node release",
            count as f64 / released.as_secs_f64()
        );

        // Two nodes, one small pool: block claims race, and late assignments borrow.
        let blocks_needed = (2 * count).div_ceil(64) as u32;
        let prefix = 32 - (blocks_needed * 64).next_power_of_two().trailing_zeros();
        let cidr = format!("10.129.0.0/{prefix}");
        let pools = vec![pool("bench-pair", &cidr, 26)];
        let started = Instant::now();
        let first = tokio::spawn(run_node(store.clone(), "left", count, pools.clone()));
        let second = tokio::spawn(run_node(store.clone(), "right", count, pools));
        let mut latencies = first.await.expect("left node");
        latencies.extend(second.await.expect("right node"));
        let mut pair = Outcome {
            latencies,
            wall: started.elapsed(),
        };
        report(&format!("two contending nodes ({cidr})"), &mut pair);
    });
}
