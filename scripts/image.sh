#!/usr/bin/env bash
# The starling container image built and run without a registry or a container daemon, so CI can
# prove the image starts. Run as root on Debian.
#   scripts/image.sh build [BINARY]   OCI image layout in $IMAGE_DIR (default target/image), tag
#                                     "starling": a slim Debian root made by mmdebstrap with nftables
#                                     and ca-certificates, then BINARY (default target/release/
#                                     starling) as /usr/local/bin/starling; prints the image's size
#   scripts/image.sh test             runs that image with runc: `starling version`, then
#                                     `starling run` against a private etcd inside a throw-away
#                                     network namespace until /readiness on 9099 answers 200, then
#                                     SIGTERM and a clean exit
# The layers are those of the Dockerfile's runtime stage (debian slim + nftables + ca-certificates,
# then the binary); the Dockerfile remains the way to build the image on a machine with a registry.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_DIR=${IMAGE_DIR:-target/image}
TAG=starling
IMAGE="$IMAGE_DIR/oci:$TAG"

die() {
    echo "image.sh: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap, runc and network namespaces need it)"

# Installs the Debian packages this script uses when their programs are missing.
need() {
    local missing=() program package
    for pair in "$@"; do
        program=${pair%%:*}
        package=${pair#*:}
        command -v "$program" >/dev/null || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

build() {
    local binary=${1:-${CARGO_TARGET_DIR:-target}/release/starling}
    [ -x "$binary" ] || die "no binary at $binary: run \`cargo build --release --locked --bin starling\` or pass one"
    need mmdebstrap:mmdebstrap umoci:umoci objcopy:binutils
    # The binary is linked against this machine's glibc, so the root is this machine's Debian
    # release, from the same Debian sources apt uses here.
    local suite sources
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$suite" ] || die "no VERSION_CODENAME in /etc/os-release: not a Debian release?"
    sources=/etc/apt/sources.list.d/debian.sources
    [ -f "$sources" ] || sources=/etc/apt/sources.list
    [ -f "$sources" ] || die "found neither /etc/apt/sources.list.d/debian.sources nor /etc/apt/sources.list"

    rm -rf "$IMAGE_DIR"
    mkdir -p "$IMAGE_DIR"
    local work="$IMAGE_DIR/work"
    umoci init --layout "$IMAGE_DIR/oci"
    umoci new --image "$IMAGE"
    umoci unpack --image "$IMAGE" "$work/bundle" >/dev/null
    rmdir "$work/bundle/rootfs"
    echo "== mmdebstrap $suite (minbase + nftables libnftables1 ca-certificates)"
    # What debian's slim images leave out (documentation, manuals, locales), no apt lists, and
    # merged /usr without the usrmerge package (which would pull in perl). resolv.conf and hostname
    # are the build machine's; the container runtime provides its own.
    mmdebstrap --quiet --variant=minbase --include=nftables,libnftables1,ca-certificates \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --aptopt='Apt::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/etc/resolv.conf "$1"/etc/hostname' \
        "$suite" "$work/bundle/rootfs" "$sources" >"$IMAGE_DIR/mmdebstrap.log" 2>&1 ||
        { tail -n 40 "$IMAGE_DIR/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $IMAGE_DIR/mmdebstrap.log)"; }
    umoci repack --image "$IMAGE" --history.created_by "mmdebstrap --variant=minbase $suite nftables libnftables1 ca-certificates" "$work/bundle"

    # Debug information is not needed to run it (the release profile strips it the same way).
    install -m 0755 "$binary" "$work/starling"
    objcopy --strip-debug "$work/starling"
    umoci insert --image "$IMAGE" --history.created_by "starling binary from $binary" \
        "$work/starling" /usr/local/bin/starling
    umoci config --image "$IMAGE" --config.entrypoint /usr/local/bin/starling --config.cmd run \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    umoci gc --layout "$IMAGE_DIR/oci"

    local compressed unpacked binary_size
    compressed=$(du -sb "$IMAGE_DIR/oci/blobs" | cut -f1)
    unpacked=$(du -sb "$work/bundle/rootfs" | cut -f1)
    binary_size=$(stat -c %s "$work/starling")
    rm -rf "$work"
    echo "image $IMAGE: $((compressed / 1048576)) MiB of compressed layers;" \
        "$(((unpacked + binary_size) / 1048576)) MiB unpacked" \
        "(Debian root $((unpacked / 1048576)) MiB, starling $((binary_size / 1048576)) MiB)"
}

# `HTTP/1.1 <status>` line of GET path on 127.0.0.1:port inside the test namespace, or nothing.
http_status() {
    ip netns exec "$NS" timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" "$2" >&3
        head -n 1 <&3' _ "$1" "$2" 2>/dev/null | tr -d '\r' || true
}

# Polls until `$@` succeeds or `seconds` pass; gives up at once when it returns 2.
wait_for() {
    local what=$1 seconds=$2 status
    shift 2
    local deadline=$((SECONDS + seconds))
    while true; do
        status=0
        "$@" || status=$?
        [ "$status" -eq 0 ] && break
        [ "$status" -ne 2 ] && [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
    echo "   $what after $((SECONDS - deadline + seconds)) s"
}

cleanup() {
    set +e
    runc delete --force "$ID" >/dev/null 2>&1
    [ -n "${ETCD_PID:-}" ] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null
    ip netns delete "$NS" 2>/dev/null
    rm -rf "$TMP"
}

# Every capability this shell may hand on, as a JSON list: what a privileged container gets (a
# sandbox may lack some, e.g. CAP_SYS_RESOURCE, and asking runc for those fails).
privileged_caps() {
    local names=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
        LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
        SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
        SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
        MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
        CHECKPOINT_RESTORE)
    local bounding bit held=()
    bounding=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
    for bit in "${!names[@]}"; do
        (((bounding >> bit) & 1)) && held+=("CAP_${names[bit]}")
    done
    jq -cn '$ARGS.positional' --args "${held[@]}"
}

# A bundle of the image whose process is `starling ARGS...` with the DaemonSet's privileges:
# every capability, writable /proc/sys and /sys, and the test namespace as its host network.
bundle() {
    local dir=$1
    shift
    umoci unpack --image "$IMAGE" "$dir" >/dev/null
    local args
    args=$(jq -cn '$ARGS.positional' --args /usr/local/bin/starling "$@")
    local caps
    caps=$(privileged_caps)
    jq --argjson args "$args" --argjson env "$CONTAINER_ENV" --argjson caps "$caps" --arg netns "/run/netns/$NS" \
        --arg hosts "$TMP/hosts" --arg lib "$TMP/var-lib-calico" --arg run "$TMP/var-run-calico" '
        .process.args = $args | .process.terminal = false
        | .process.env += $env
        | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps, inheritable: $caps, ambient: $caps}
        | .linux.namespaces |= map(if .type == "network" then .path = $netns else . end)
        | del(.linux.maskedPaths) | del(.linux.readonlyPaths)
        | .mounts |= map(if .destination == "/sys" then .options -= ["ro"] else . end)
        | .mounts += [
            {destination: "/etc/hosts", type: "bind", source: $hosts, options: ["rbind", "ro"]},
            {destination: "/var/lib/calico", type: "bind", source: $lib, options: ["rbind", "rw"]},
            {destination: "/var/run/calico", type: "bind", source: $run, options: ["rbind", "rw"]}]
        ' "$dir/config.json" >"$dir/config.json.new"
    mv "$dir/config.json.new" "$dir/config.json"
}

run_test() {
    [ -f "$IMAGE_DIR/oci/index.json" ] || die "no image in $IMAGE_DIR: run \`scripts/image.sh build\` first"
    need umoci:umoci runc:runc jq:jq etcd:etcd-server ip:iproute2
    NS="starling-img-$$"
    ID="starling-img-$$"
    TMP=$(mktemp -d)
    trap cleanup EXIT
    mkdir -p "$TMP/var-lib-calico" "$TMP/var-run-calico"
    # What the kubelet mounts into a hostNetwork pod.
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$TMP/hosts"

    # The namespace stands in for the node: loopback, and one interface whose address
    # IP=autodetect finds (a documentation range, and nothing outside this namespace sees it)
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    # (a veth pair with both ends inside: not every kernel here has the dummy driver).
    ip -n "$NS" link add eth0 type veth peer name eth1
    ip -n "$NS" link set eth1 up
    ip -n "$NS" addr add 192.0.2.10/24 dev eth0
    ip -n "$NS" link set eth0 up

    echo "== starling version (in the image)"
    CONTAINER_ENV='[]'
    bundle "$TMP/version" version
    local version
    version=$(runc run --bundle "$TMP/version" "$ID" </dev/null) || die "starling version failed in the image: $version"
    runc delete --force "$ID" >/dev/null 2>&1 || true
    echo "   $version"
    [[ "$version" =~ ^starling\ [0-9] ]] || die "unexpected \`starling version\` output: $version"

    echo "== etcd in the test namespace"
    ip netns exec "$NS" etcd --name image-test --data-dir "$TMP/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster image-test=http://127.0.0.1:2380 >"$TMP/etcd.log" 2>&1 &
    ETCD_PID=$!
    etcd_healthy() { [ "$(http_status 2379 /health)" = "HTTP/1.1 200 OK" ]; }
    wait_for "etcd healthy" 30 etcd_healthy || { cat "$TMP/etcd.log" >&2; die "etcd did not become healthy in 30 s"; }

    echo "== starling run (in the image, etcd datastore)"
    # The DaemonSet's environment, with etcd instead of the Kubernetes API.
    CONTAINER_ENV='["NODENAME=image-node","DATASTORE_TYPE=etcdv3","ETCD_ENDPOINTS=http://127.0.0.1:2379","IP=autodetect","CALICO_NETWORKING_BACKEND=vxlan","CALICO_IPV4POOL_IPIP=Never","CALICO_IPV4POOL_VXLAN=Always","FELIX_IPV6SUPPORT=false","FELIX_HEALTHENABLED=true","FELIX_PROMETHEUSMETRICSENABLED=true"]'
    bundle "$TMP/run" run
    runc run --bundle "$TMP/run" "$ID" </dev/null >"$TMP/starling.log" 2>&1 &
    local runc_pid=$!
    [ -n "${IMAGE_DEBUG:-}" ] && sleep 5
    ready() {
        kill -0 "$runc_pid" 2>/dev/null || return 2
        [ "$(http_status 9099 /readiness)" = "HTTP/1.1 200 OK" ]
    }
    if [ -n "${IMAGE_DEBUG:-}" ]; then ip netns exec "$NS" ss -ltnp; http_status 9099 /readiness; ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/127.0.0.1/9099; printf \"GET /readiness HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n\" >\    if ! wait_for "/readiness 200" 60 ready; then3; timeout 3 cat <\    if ! wait_for "/readiness 200" 60 ready; then3"; fi
    if ! wait_for "/readiness 200" 60 ready; then
        cat "$TMP/starling.log" >&2
        die "starling run in the image exited or was not ready within 60 s (last /readiness: $(http_status 9099 /readiness))"
    fi
    # What start-up did, seen from outside the container: the VXLAN device and the NAT table
    # (applied with the image's own nft).
    ip -n "$NS" -d link show vxlan.calico | grep -q vxlan || die "no vxlan.calico device in the namespace"
    echo "   vxlan.calico is up: $(ip -n "$NS" -br addr show vxlan.calico)"
    ip netns exec "$NS" nft list tables
    [ -n "$(ip netns exec "$NS" nft list tables)" ] || die "starling in the image applied no nftables table"

    runc kill "$ID" TERM
    local status=0
    wait "$runc_pid" || status=$?
    [ "$status" -eq 0 ] || { cat "$TMP/starling.log" >&2; die "starling run exited with status $status after SIGTERM"; }
    echo "   exited 0 after SIGTERM"
    echo "image test passed"
}

case "${1:-}" in
    build) build "${2:-}" ;;
    test) run_test ;;
    *) die "usage: scripts/image.sh build [BINARY] | test" ;;
esac
