#!/usr/bin/env bash
# The lab rows of README's "Measured" table, with the real `starling run` daemons that
# `starling lab` starts (one per node namespace, a private etcd). For each lab (vxlan 3x2,
# bgp 3x2, bgp 10x2), RUNS times (default 3): the wall time from `starling lab up` to the first
# all-pairs ping matrix without a lost pair, and every daemon's resident memory (VmRSS) right
# then. Run as root with etcd installed (scripts/lab.sh installs it).
#   scripts/lab-bench.sh [STARLING]   # default: the dev-profile binary scripts/lab.sh builds
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-${CARGO_TARGET_DIR:-target}/debug/starling}
runs=${RUNS:-3}
[ "$(id -u)" -eq 0 ] || { echo "lab-bench.sh: run as root (the lab creates namespaces)" >&2; exit 1; }
[ -x "$binary" ] || {
    echo "lab-bench.sh: no binary at $binary: build it (cargo build --locked --bin starling) or pass one" >&2
    exit 1
}
command -v jq >/dev/null || { echo "lab-bench.sh: needs jq (apt-get install jq)" >&2; exit 1; }
name="bench$$"
state_dir="/run/starling-lab/$name"
log=$(mktemp)
trap '"$binary" lab --name "$name" down >/dev/null 2>&1 || true; rm -f "$log"' EXIT

# Prints "<seconds to full matrix> <min RSS MiB> <max RSS MiB>" for one lab.
measure() {
    local mode=$1 nodes=$2 pods=$3 started ended deadline
    started=$(date +%s.%N)
    if ! "$binary" lab --name "$name" up --mode "$mode" --nodes "$nodes" --pods-per-node "$pods" >"$log" 2>&1; then
        cat "$log" >&2
        echo "lab-bench.sh: lab up failed ($mode, $nodes nodes)" >&2
        return 1
    fi
    # `lab up` ends with one ping matrix; while that one lost pairs, ask again (120 s at most).
    deadline=$((SECONDS + 120))
    if ! grep -Eq '^([0-9]+) of \1 pairs reached' "$log"; then
        until "$binary" lab --name "$name" ping >"$log" 2>&1; do
            [ "$SECONDS" -lt "$deadline" ] || { cat "$log" >&2; echo "lab-bench.sh: no full matrix in 120 s" >&2; return 1; }
        done
    fi
    ended=$(date +%s.%N)
    local rss=()
    for pid in $(jq -r '.daemon_pids[]' "$state_dir/state.json"); do
        rss+=("$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")")
    done
    "$binary" lab --name "$name" down >/dev/null
    printf '%.1f %s %s\n' "$(echo "$ended - $started" | bc)" \
        "$(printf '%s\n' "${rss[@]}" | sort -n | head -1)" "$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)"
}

# "low-high" of the numbers given, or one number when they are all equal.
range() { printf '%s\n' "$@" | sort -n | sed -n '1p;$p' | paste -sd- | sed 's/^\([^-]*\)-\1$/\1/'; }

echo "binary: $binary ($(stat -c %s "$binary") bytes); $runs runs per lab"
for lab in "vxlan 3 2" "bgp 3 2" "bgp 10 2"; do
    read -r mode nodes pods <<<"$lab"
    times=() rss_low=() rss_high=()
    for _ in $(seq "$runs"); do
        read -r seconds low high < <(measure "$mode" "$nodes" "$pods")
        [ -n "${seconds:-}" ] || exit 1
        times+=("$seconds") rss_low+=("$low") rss_high+=("$high")
    done
    echo "lab $mode, $nodes nodes x $pods pods: lab up to full ping matrix $(range "${times[@]}") s;" \
        "daemon RSS then $(range "${rss_low[@]}" "${rss_high[@]}") MiB"
done
