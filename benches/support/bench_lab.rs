//! A `starling lab` for a benchmark: this build's `starling` in every node (the release one
//! under `cargo bench`), state under the temporary directory, and a guard that takes the lab
//! down when the benchmark ends, also when it panics.

use std::path::PathBuf;

use starling::lab::{self, LabOptions, LabState, Mode, UpArgs};

/// Runs `lab down` on drop.
pub struct LabGuard(pub LabOptions);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(error) = lab::down(&self.0) {
            eprintln!("lab {}: lab down failed: {error:#}", self.0.name);
        }
    }
}

/// `lab up --name NAME --nodes NODES --mode MODE --pods-per-node PODS`.
pub fn up(
    name: &str,
    nodes: usize,
    mode: Mode,
    pods_per_node: usize,
) -> (LabOptions, LabState, LabGuard) {
    let options = LabOptions {
        name: name.to_string(),
        state_dir: Some(std::env::temp_dir().join(format!("starling-lab-{name}"))),
    };
    let args = UpArgs {
        nodes,
        mode,
        pods_per_node,
        subnets: None,
        etcd_endpoints: None,
        ipv6: false,
        starling_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_starling"))),
    };
    let state = lab::up(&options, &args).expect("lab up");
    let guard = LabGuard(options.clone());
    (options, state, guard)
}
