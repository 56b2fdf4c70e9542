#!/usr/bin/env bash
# Starling's main job on one machine: installs what is missing, builds Starling, brings up a
# multi-node lab (network namespaces, a private etcd, one daemon per node, pods through the CNI
# plugin) and prints the all-pairs ping matrix. Run as root on Debian with Rust installed.
#   NODES=3 MODE=vxlan PODS=2 ./scripts/lab.sh   # MODE: vxlan | bgp | bgp-rr | ipip | ipip-cross-subnet
#                                                #       | vxlan-cross-subnet
#   IPV6=1 ./scripts/lab.sh                      # dual stack (lab up --ipv6): both ping matrices
# On a kernel without ipip (this machine kind's) the ipip modes run in a QEMU guest with Debian's
# kernel: up, ping matrix and down in one boot.
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
starling=${CARGO_TARGET_DIR:-target}/debug/starling
mode=${MODE:-vxlan}
up=("$starling" lab up --nodes "${NODES:-3}" --mode "$mode" --pods-per-node "${PODS:-2}")
case ${IPV6:-0} in
    1 | true | yes) up+=(--ipv6) ;;
    0 | false | no | "") ;;
    *) echo "IPV6=$IPV6: use 1 (dual stack) or 0" >&2; exit 1 ;;
esac

# Whether this kernel can make an ipip device: tried in a throw-away namespace, never the root one.
kernel_has_ipip() {
    local ns=stl-ipipcheck-$$ rc=0
    ip netns add "$ns"
    ip -n "$ns" link add ipiptest type ipip remote 192.0.2.1 2>/dev/null || rc=$?
    ip netns del "$ns"
    return "$rc"
}

case $mode in
    ipip | ipip-cross-subnet)
        if ! kernel_has_ipip; then
            # Calico's default encapsulation on a kernel without it (this machine kind's): the same
            # lab in a QEMU guest running Debian's kernel (scripts/vm-test.sh). The guest's
            # namespaces vanish when it powers off, so the lab is brought up, pinged and torn
            # down in one boot.
            echo "this kernel ($(uname -r)) has no ipip module: running the $mode lab in a QEMU guest with Debian's kernel (scripts/vm-test.sh)" >&2
            scripts/deps.sh install test >/dev/null
            exec scripts/vm-test.sh --timeout "${VM_TIMEOUT:-1200}" -- sh -c \
                'uname -r; "$@"; status=$?; "$0" lab down; exit $status' "$starling" "${up[@]}"
        fi
        ;;
esac
exec "${up[@]}"
