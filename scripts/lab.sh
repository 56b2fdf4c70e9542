#!/usr/bin/env bash
# Starling's main job on one machine: installs what is missing, builds Starling, brings up a
# multi-node lab (network namespaces, a private etcd, one daemon per node, pods through the CNI
# plugin) and prints the all-pairs ping matrix. Run as root on Debian with Rust installed.
#   NODES=3 MODE=vxlan PODS=2 ./scripts/lab.sh        # MODE: vxlan | bgp | bgp-rr | ipip
# Afterwards: target/debug/starling lab status | ping | down
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "the lab creates network namespaces: run this as root" >&2
    exit 1
fi

# What the build and the lab need (scripts/deps.sh lists it; nothing is installed when it is all
# there).
scripts/deps.sh install build lab

# The dev profile, not --release: a clean build takes about a third of the release build's time on
# 2 cores (thin LTO and opt-level 3 are most of it), the lab's control plane does not need the
# speed, and it is the binary the tests run, so a `cargo test` afterwards reuses this build.
cargo build --locked --bin starling
exec "${CARGO_TARGET_DIR:-target}/debug/starling" lab up --nodes "${NODES:-3}" --mode "${MODE:-vxlan}" --pods-per-node "${PODS:-2}"
