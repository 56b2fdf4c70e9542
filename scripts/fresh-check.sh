#!/usr/bin/env bash
# The clean-room check: proves that .ci/run and scripts/lab.sh work on a Debian machine that has
# Rust and nothing else, i.e. that the lists in scripts/deps.sh are complete.
#
# It builds a throw-away Debian root with mmdebstrap (variant minbase: the Essential and
# Priority:required packages and apt, less than any real installation has), puts the committed
# tree (git archive HEAD) in it, the host's Rust toolchain read-only and the host's crate cache
# (so the build runs offline, whether or not crates.io answers), with the host's resolver and
# locally added CA certificates for apt and PyPI, and then, inside it as root,
# runs .ci/run (which installs its own lists) and scripts/lab.sh followed by `lab ping` and
# `lab down`. The root's mounts live in a private mount namespace, so they vanish with it; at
# exit, failed or not, processes left in the root are killed and the root is deleted.
#
#   scripts/fresh-check.sh                        # all of .ci/run, then the lab
#   scripts/fresh-check.sh --no-fail-fast         # arguments go to .ci/run's `cargo test`
#   scripts/fresh-check.sh --install-only         # only install the lists in the root (minutes)
#
# Run as root; the build costs the machine's cores for a while. Environment: FRESH_SUITE (the
# host's release), FRESH_MIRROR (http://deb.debian.org/debian), FRESH_DIR (/var/tmp),
# FRESH_LOG (the full log; default in FRESH_DIR, kept), MODE/NODES/PODS for the lab.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
install_only=
if [ "${1:-}" = --install-only ]; then
    install_only=1
    shift
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "fresh-check builds a Debian root and runs namespaces in it: run this as root" >&2
    exit 1
fi
"$repo/scripts/deps.sh" install fresh-check

# shellcheck source=/dev/null
suite=${FRESH_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")}
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
base=${FRESH_DIR:-/var/tmp}
log=${FRESH_LOG:-$base/starling-fresh-check.log}
toolchain=$(rustc --print sysroot)
for tool in cargo rustc cargo-clippy clippy-driver cargo-fmt rustfmt; do
    [ -x "$toolchain/bin/$tool" ] || { echo "the host toolchain $toolchain has no $tool" >&2; exit 1; }
done
cargo_home=${CARGO_HOME:-$HOME/.cargo}

work=$(mktemp -d "$base/starling-fresh.XXXXXX")
root=$work/root

# Processes whose root directory is the throw-away root: all started by this script.
# shellcheck disable=SC2317  # (called from the EXIT trap)
in_root_processes() {
    local entry pid
    for entry in /proc/[0-9]*; do
        pid=${entry#/proc/}
        [ "$(readlink "$entry/root" 2>/dev/null)" = "$root" ] && echo "$pid"
    done
    return 0
}

# shellcheck disable=SC2317  # (the EXIT trap)
cleanup() {
    local status=$? pids mounts
    trap - EXIT INT TERM
    pids=$(in_root_processes)
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        echo "fresh-check: killing what is left in the root:" $pids
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 1
    fi
    # The mounts were made in a private namespace; anything visible here is a leak to undo.
    mounts=$(findmnt -rn -o TARGET | grep -F "$work" | sort -r || true)
    for mount in $mounts; do
        umount -l "$mount" 2>/dev/null || true
    done
    if findmnt -rn -o TARGET | grep -qF "$work"; then
        echo "fresh-check: mounts remain under $work; not deleting it" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    echo "fresh-check: removed the root; full log in $log"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stamp() { date +%s; }
phase() { printf '\n== fresh-check: %s\n' "$*"; }

exec > >(tee "$log") 2>&1
started=$(stamp)
phase "commit $(git -C "$repo" rev-parse --short HEAD) of $repo (committed files only)"
git -C "$repo" status --porcelain | grep -q . && echo "note: uncommitted changes are not part of the check"

phase "crates for Cargo.lock into the host cache ($cargo_home)"
(cd "$repo" && cargo fetch --locked --quiet)

phase "Debian $suite root (mmdebstrap --variant=minbase) in $root"
mmdebstrap --quiet --variant=minbase --mode=root "$suite" "$root" \
    "deb $mirror $suite main" \
    "deb $mirror $suite-updates main" \
    "deb http://security.debian.org/debian-security $suite-security main"
echo "packages in the empty root: $(chroot "$root" dpkg-query -W -f='.\n' | wc -l)"
t_root=$(stamp)

mkdir -p "$root/src/starling" "$root/opt/rust" "$root/root/.cargo/registry"
git -C "$repo" archive --format=tar HEAD | tar -x -C "$root/src/starling"
# The crate sources cargo would download (index and .crate files); the root builds offline.
cp -a "$cargo_home/registry/index" "$cargo_home/registry/cache" "$root/root/.cargo/registry/"
# The network as the host reaches it: its resolver and the CA certificates added locally (a
# network behind a TLS-inspecting proxy); ca-certificates picks them up when the lists install it.
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi

# Runs inside `unshare --mount`: mounts made here are private and end with it.
cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
root=$1 toolchain=$2 install_only=$3
shift 3
# The root a mount point of its own, as / is on a machine (runc makes / rslave and pivots).
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
if mountpoint -q /sys/fs/cgroup; then mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"; fi
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/dev/shm"
mount -t tmpfs tmpfs "$root/run"
mount --bind "$toolchain" "$root/opt/rust"
mount -o remount,bind,ro "$root/opt/rust"
run_in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CARGO_HOME=/root/.cargo CARGO_NET_OFFLINE=true CI=true \
        NODES="${NODES:-3}" MODE="${MODE:-vxlan}" PODS="${PODS:-2}" \
        /bin/bash -c "cd /src/starling && $1" bash "${@:2}"
}
if [ -n "$install_only" ]; then
    echo "== fresh-check: installing the lists only (build test, python, build lab)"
    run_in_root 'scripts/deps.sh install build test && scripts/deps.sh python && scripts/deps.sh install build lab'
    exit
fi
echo "== fresh-check: .ci/run $*"
# Both halves run whatever the first one gives, so one check reports everything it finds.
t0=$(date +%s)
ci=0
run_in_root '.ci/run "$@"' "$@" || ci=$?
t1=$(date +%s)
echo "== fresh-check: .ci/run exited $ci after $((t1 - t0)) s"
echo "== fresh-check: scripts/lab.sh (MODE=${MODE:-vxlan} NODES=${NODES:-3} PODS=${PODS:-2})"
lab=0
run_in_root 'scripts/lab.sh && target/debug/starling lab ping; status=$?; target/debug/starling lab down; exit $status' || lab=$?
t2=$(date +%s)
echo "== fresh-check: lab.sh, lab ping and lab down exited $lab after $((t2 - t1)) s"
[ "$ci" -eq 0 ] && [ "$lab" -eq 0 ]
INSIDE

phase "in the root: .ci/run, then the lab"
status=0
unshare --mount --propagation private bash "$work/inside.sh" "$root" "$toolchain" "$install_only" "$@" || status=$?
finished=$(stamp)
if [ "$status" -eq 0 ]; then verdict=passed; else verdict="FAILED (exit $status)"; fi
phase "$verdict: root built in $((t_root - started)) s, everything in $((finished - started)) s"
echo "installed in the root by the lists: $(chroot "$root" dpkg-query -W -f='.\n' | wc -l) packages"
exit "$status"
