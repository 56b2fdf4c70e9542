#!/usr/bin/env bash
# Runs one command as root inside a throw-away QEMU guest that boots Debian's kernel with the host's
# root file system, for tests that need kernel features the host's kernel lacks (ipip, wireguard).
# Output streams live to this script's stdout/stderr; its exit status is the command's.
#
#   scripts/vm-test.sh [options] -- COMMAND [ARG...]
#   scripts/vm-test.sh -- uname -r
#   scripts/vm-test.sh -- sh -c 'ip link add t0 type ipip && ip -d link show t0'
#   scripts/vm-test.sh --test lab_e2e -- --test-threads 1 ipip
#
# Options:
#   --memory MB      guest memory (default 2048)
#   --timeout S      kill the VM after S seconds, boot included (default 1800); exit status 124
#   --smp N          guest CPUs (default 2: TCG runs one host thread per guest CPU)
#   --share DIR      also make host directory DIR writable in the guest (repeatable)
#   --no-share       do not share the working directory's repository writable (see below)
#   --modules 'M..'  extra kernel modules to load at boot (also: env VM_MODULES)
#   --no-default-modules  load only the --modules ones at boot (2-4 s faster)
#   --test NAME      run the newest test binary cargo built for NAME ($CARGO_TARGET_DIR or target/,
#                    {debug,release}/deps/NAME-<hash>) with the ARGs after --, from the package's
#                    directory, as cargo test does
#   --verbose        print boot and total times, and keep the guest kernel's log
#   --install-deps   install the Debian packages this needs, then exit (done anyway when missing)
#   --check          check (installing what is missing) that a VM can boot here, then exit: 0 when
#                    it can, 125 with the reason when not
#
# The guest sees:
#   * the host's / over 9p, read-only, under a tmpfs overlay: every path is writable, writes vanish
#     at power-off (VM_ROOT=ro: a plain read-only root). So the host's programs, toolchain and
#     built binaries (target/) are all there;
#   * writable 9p shares whose writes reach the host: the git top level of the working directory,
#     $CARGO_TARGET_DIR when outside it, every --share (never /, /tmp, /run, /var/tmp, /dev, /proc,
#     /sys). QEMU's 9p grants every file lock, so do not build one target dir on both sides at once;
#   * fresh tmpfs on /tmp, /run (so `ip netns add` works), /var/tmp, /dev/shm; devtmpfs, devpts,
#     proc, sysfs, cgroup2, bpffs; `lo` up; no network device (the guest reaches nothing outside);
#   * the caller's working directory and exported environment, minus the host terminal's and
#     session's variables (ENV_DROP below, VM_ENV_DROP='NAME ...'), plus VM_TEST_GUEST=1;
#     stdin is /dev/null, stdout and stderr are separate pipes;
#   * the kernel modules DEFAULT_MODULES and --modules loaded at boot (modprobe -a); others load on
#     demand, as on any Debian host.
#
# Exit status: COMMAND's; 124 when --timeout killed the VM; 125 when the VM itself failed (no kernel
# or QEMU, boot failure, guest kernel panic, ...), with the reason, QEMU's messages and the end of
# the guest kernel's log, which is kept in VM_LOG_DIR (default $TMPDIR or /tmp). Nothing else is
# left behind (temp dir and QEMU go away on exit, failure or signal) except the vmlinux cache.
#
# Missing packages (qemu-system-x86, linux-image-amd64, busybox-static, cpio, kmod) are installed
# with apt-get unless VM_NO_INSTALL is set. KVM is not used: plain emulation (TCG) works everywhere.
# Boot to the command takes about 10 s on an idle 2-core host.
#
# Environment: VM_KERNEL (kernel image; default the newest /boot/vmlinuz-*), VM_MODULES_DIR (default
# /lib/modules/<version from the image name>), VM_QEMU, VM_BUSYBOX, VM_BOOT_TIMEOUT (seconds until
# the command must have started, default 300), VM_ROOT (overlay | ro), VM_LOG_DIR, VM_CONSOLE_LOG
# (keep the kernel log there, always), VM_CPU (QEMU -cpu, default max), VM_APPEND (more kernel
# command line), VM_ASLR=1 (keep address randomisation, off by default because TCG retranslates
# code at every new address), VM_CACHE_DIR (default /var/cache/vm-test), VM_NO_VMLINUX=1 (boot
# the bzImage, ~9 s slower), VM_SEABIOS=1, VM_KEEP_WORK=1 (keep the temp dir, for debugging).
set -euo pipefail

# Modules loaded at boot: what iproute2, nftables and Starling's tests use, including the fallback
# devices a test may look at (ipip brings tunl0). Under TCG each costs about 0.1 s.
DEFAULT_MODULES=(
    dummy veth bridge 8021q tun ipip sit ip6_tunnel vxlan wireguard
    nf_conntrack nf_nat nf_tables nft_ct nft_nat nft_masq nft_redir nft_chain_nat
    nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_reject_inet nft_compat
)
# Modules the initramfs loads to reach the root (their dependencies come from modules.dep).
INITRAMFS_MODULES=(virtio_pci 9pnet_virtio 9p overlay virtio_console)
# Environment variables that must not cross into the guest.
ENV_DROP=(TERM TERMCAP COLUMNS LINES DISPLAY WAYLAND_DISPLAY XAUTHORITY XDG_RUNTIME_DIR
    DBUS_SESSION_BUS_ADDRESS GPG_AGENT_INFO STY WINDOW PWD OLDPWD SHLVL _)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=vm-test
say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { say "$*"; exit 125; }
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}
# shellcheck source-path=SCRIPTDIR source=vm/lib.sh
. "$here/vm/lib.sh"

# ---- arguments ---------------------------------------------------------------------------------
memory=2048
timeout=1800
smp=2
verbose=0
default_share=1
default_modules=1
test_name=
check_only=0
shares=()
extra_modules=()
read -r -a env_modules <<<"${VM_MODULES:-}"
extra_modules+=("${env_modules[@]}")

need_arg() { [ "$#" -ge 2 ] || die "$1 needs a value"; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [ "$#" -gt 0 ]; do
    case $1 in
        --memory) need_arg "$@"; memory=$2; shift 2 ;;
        --memory=*) memory=${1#*=}; shift ;;
        --timeout) need_arg "$@"; timeout=$2; shift 2 ;;
        --timeout=*) timeout=${1#*=}; shift ;;
        --smp) need_arg "$@"; smp=$2; shift 2 ;;
        --smp=*) smp=${1#*=}; shift ;;
        --share) need_arg "$@"; shares+=("$2"); shift 2 ;;
        --share=*) shares+=("${1#*=}"); shift ;;
        --no-share) default_share=0; shift ;;
        --modules) need_arg "$@"; read -r -a m <<<"$2"; extra_modules+=("${m[@]}"); shift 2 ;;
        --modules=*) read -r -a m <<<"${1#*=}"; extra_modules+=("${m[@]}"); shift ;;
        --no-default-modules) default_modules=0; shift ;;
        --test) need_arg "$@"; test_name=$2; shift 2 ;;
        --test=*) test_name=${1#*=}; shift ;;
        -v|--verbose) verbose=1; shift ;;
        --install-deps) install_deps; exit 0 ;;
        --check) check_only=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; break ;;
        -*) say "unknown option: $1"; usage 2 ;;
        *) break ;;
    esac
done
guest_pwd=$PWD
if [ -n "$test_name" ]; then
    # A test binary that cargo built: run it as cargo test does, from its package's directory.
    manifest_dir=$PWD
    while [ ! -f "$manifest_dir/Cargo.toml" ]; do
        [ "$manifest_dir" != / ] || die "--test $test_name: no Cargo.toml in $PWD or above"
        manifest_dir=$(dirname "$manifest_dir")
    done
    target_dir=${CARGO_TARGET_DIR:-$manifest_dir/target}
    test_bin=$(find "$target_dir"/debug/deps "$target_dir"/release/deps -maxdepth 1 -type f -perm -u+x \
        -regextype posix-extended -regex ".*/${test_name//-/_}-[0-9a-f]{16}" -printf '%T@ %p\n' 2>/dev/null |
        sort -rn | head -n 1 | cut -d' ' -f2- || true)
    [ -n "$test_bin" ] || die "--test $test_name: no test binary $target_dir/{debug,release}/deps/${test_name//-/_}-<hash>; build it first with: cargo test --no-run --test $test_name"
    say "test binary $test_bin"
    guest_pwd=$manifest_dir
    export CARGO_MANIFEST_DIR=$manifest_dir
    set -- "$test_bin" "$@"
fi
[ "$#" -gt 0 ] || [ "$check_only" -eq 1 ] || { say "no command given"; usage 2; }
if ! is_uint "$memory" || [ "$memory" -lt 256 ]; then die "--memory wants megabytes (>= 256), got '$memory'"; fi
if ! is_uint "$timeout" || [ "$timeout" -lt 1 ]; then die "--timeout wants seconds, got '$timeout'"; fi
if ! is_uint "$smp" || [ "$smp" -lt 1 ]; then die "--smp wants a CPU count, got '$smp'"; fi
boot_timeout=${VM_BOOT_TIMEOUT:-300}
is_uint "$boot_timeout" || die "VM_BOOT_TIMEOUT wants seconds, got '$boot_timeout'"
root_mode=${VM_ROOT:-overlay}
case $root_mode in overlay|ro) ;; *) die "VM_ROOT must be overlay or ro, got '$root_mode'" ;; esac
[ "$(id -u)" -eq 0 ] || die "run this as root (the guest's root is the host's, shared by QEMU)"
[ -z "${VM_TEST_GUEST:-}" ] || die "already inside a vm-test guest (VM_TEST_GUEST is set); no nested VMs"

# ---- what the VM needs from the host -------------------------------------------------------------
# A kernel image named explicitly must be there: nothing to install for it.
[ -z "${VM_KERNEL:-}" ] || [ -f "$VM_KERNEL" ] || die "no guest kernel image at VM_KERNEL=$VM_KERNEL (no such file)"
ensure_deps
install_hint="install with: apt-get install -y ${VM_PACKAGES[*]} (or: $0 --install-deps)"
kernel=${VM_KERNEL:-$(newest_kernel)}
[ -n "$kernel" ] || die "no guest kernel: no /boot/vmlinuz-* here; $install_hint; or point VM_KERNEL at a kernel image"
kver=$(basename "$kernel"); kver=${kver#vmlinuz-}
moddir=${VM_MODULES_DIR:-/lib/modules/$kver}
[ -f "$moddir/modules.dep" ] || die "no modules for guest kernel $kernel: no $moddir/modules.dep (set VM_MODULES_DIR); $install_hint"
qemu=${VM_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || die "no $qemu; $install_hint"
busybox=$(static_busybox) || die "no static busybox (${VM_BUSYBOX:-/bin/busybox, /usr/bin/busybox}; VM_BUSYBOX); $install_hint"
for p in cpio modprobe; do command -v "$p" >/dev/null || die "no $p; $install_hint"; done
for b in /bin/bash /bin/sh; do [ -x "$b" ] || die "the guest runs the host's $b, which is missing"; done
boot_image=$(boot_image_for "$kernel" "$kver")
[ "$check_only" -eq 0 ] || { say "ready: kernel $kernel ($boot_image), $qemu, $busybox"; exit 0; }

# ---- work dir, cleanup --------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/vm-test.XXXXXX")
qemu_pid=
reader_pids=()
log_kept=

# shellcheck disable=SC2317 # these run from traps
stop_qemu() {
    [ -n "$qemu_pid" ] || return 0
    if kill -0 "$qemu_pid" 2>/dev/null; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$qemu_pid" 2>/dev/null || true
    fi
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=
}

# shellcheck disable=SC2317
stop_readers() {
    local p f fd alive
    # The readers end by themselves at EOF once QEMU has closed its side. One still waiting for a
    # writer (QEMU died before opening the pipes) gets one for an instant: opening a FIFO read-write
    # never blocks. Then give them a moment to drain, and stop any left.
    for f in "$work/stdout.fifo" "$work/stderr.fifo"; do
        [ -p "$f" ] || continue
        exec {fd}<>"$f"
        exec {fd}>&-
    done
    for _ in $(seq 30); do
        alive=0
        for p in "${reader_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for p in "${reader_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    reader_pids=()
}

# Copies the console log out of the work dir (which goes away) into log_kept.
keep_log() {
    [ -z "$log_kept" ] || return 0
    local dest=${VM_CONSOLE_LOG:-${VM_LOG_DIR:-${TMPDIR:-/tmp}}/vm-test-console.$(date +%Y%m%d-%H%M%S).$$.log}
    if [ -f "$work/console.log" ] && cp "$work/console.log" "$dest" 2>/dev/null; then
        log_kept=$dest
    fi
}

# shellcheck disable=SC2317
cleanup() {
    trap - EXIT INT TERM HUP
    stop_qemu
    stop_readers
    [ -z "${VM_CONSOLE_LOG:-}" ] || keep_log
    if [ -n "${VM_KEEP_WORK:-}" ]; then say "work dir kept: $work"; else rm -rf "$work"; fi
}
# shellcheck disable=SC2317
on_signal() {
    trap - INT TERM HUP
    say "interrupted by SIG$1; stopping the VM"
    cleanup
    case $1 in INT) exit 130 ;; TERM) exit 143 ;; *) exit 129 ;; esac
}
trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

# Says why the VM failed, with QEMU's messages and the end of the kernel log, and exits with $1.
vm_failed() {
    local rc=$1; shift
    say "$*"
    keep_log
    if grep -qv 'terminating on signal' "$work/qemu.err" 2>/dev/null; then
        say "qemu said:"; grep -v 'terminating on signal' "$work/qemu.err" | sed 's/^/    /' >&2
    fi
    if [ -s "$log_kept" ]; then
        say "last lines of the guest kernel log ($log_kept):"
        tail -n 25 "$log_kept" | sed 's/^/    /' >&2
    elif [ -n "$log_kept" ]; then
        say "the guest kernel printed nothing ($log_kept is empty)"
    fi
    exit "$rc"
}

# ---- initramfs and control dir ------------------------------------------------------------------
initrd_dir=$work/initramfs
ctl=$work/ctl
mkdir -p "$initrd_dir"/{bin,dev,proc,sys,lower,newroot,ovl,mods} "$ctl"
cp "$busybox" "$initrd_dir/bin/busybox"
cp "$here/vm/init" "$initrd_dir/init"
chmod 0755 "$initrd_dir/init"
cp "$here/vm/stage2.sh" "$ctl/stage2.sh"
modules=()
[ "$default_modules" -eq 0 ] || modules+=("${DEFAULT_MODULES[@]}")
modules+=("${extra_modules[@]}")
prepare_modules "$initrd_dir" "$ctl/modules.load" "${modules[@]}"

# Writable shares: the working directory's repository by default, then --share.
is_unshareable() {
    case $1 in /|/tmp|/run|/var/tmp|/dev|/dev/*|/proc|/proc/*|/sys|/sys/*) return 0 ;; esac
    return 1
}
share_paths=()
if [ "$default_share" -eq 1 ]; then
    top=$(git -C "$guest_pwd" rev-parse --show-toplevel 2>/dev/null || echo "$guest_pwd")
    top=$(realpath -e "$top")
    is_unshareable "$top" || share_paths+=("$top")
    if [ -n "${CARGO_TARGET_DIR:-}" ] && [ -d "$CARGO_TARGET_DIR" ]; then
        t=$(realpath -e "$CARGO_TARGET_DIR")
        case $t/ in "$top"/*) ;; *) is_unshareable "$t" || share_paths+=("$t") ;; esac
    fi
fi
for s in "${shares[@]}"; do
    [ -d "$s" ] || die "--share $s: no such directory"
    s=$(realpath -e "$s")
    is_unshareable "$s" && die "--share $s: refusing to share that directory writable"
    share_paths+=("$s")
done
# Parents before children, once each.
mapfile -t share_paths < <(printf '%s\n' "${share_paths[@]}" | awk 'NF' | LC_ALL=C sort -u)
: >"$initrd_dir/shares.list"
qemu_shares=()
i=0
for s in "${share_paths[@]}"; do
    case $s in *$'\n'*|*,*) die "cannot share $s: QEMU's -virtfs takes no commas or newlines in a path" ;; esac
    printf 'share%d %s\n' "$i" "$s" >>"$initrd_dir/shares.list"
    qemu_shares+=(-virtfs "local,path=$s,mount_tag=share$i,security_model=none,multidevs=remap")
    i=$((i + 1))
done

host_name=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)
[[ $host_name =~ ^[A-Za-z0-9._-]+$ ]] || host_name=vm-test
printf 'ROOT_MODE=%s\nHOST_NAME=%s\n' "$root_mode" "$host_name" >"$initrd_dir/config"
(cd "$initrd_dir" && find . | cpio -o -H newc --quiet) >"$work/initrd.img"
write_run_script "$guest_pwd" "$@" >"$ctl/run.sh"

# ---- QEMU ---------------------------------------------------------------------------------------
mkfifo "$work/stdout.fifo" "$work/stderr.fifo"
cat "$work/stdout.fifo" &
reader_pids+=($!)
cat "$work/stderr.fifo" >&2 &
reader_pids+=($!)
: >"$work/console.log"

append="console=ttyS0 panic=-1 oops=panic loglevel=6 rdinit=/init 8250.nr_uarts=1"
append+=" i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd mitigations=off random.trust_cpu=on edd=off"
[ -n "${VM_ASLR:-}" ] || append+=" norandmaps"
append+=" ${VM_APPEND:-}"
# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
qemu_args=(
    -name vm-test -nodefaults -no-user-config -no-reboot
    -accel tcg,thread=multi -cpu "${VM_CPU:-max}" -smp "$smp" -m "$memory"
    -display none -vga none -monitor none
    -kernel "$boot_image" -initrd "$work/initrd.img" -append "$append"
    -chardev "file,id=con,path=$work/console.log" -serial chardev:con
    -device virtio-rng-pci
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$ctl,mount_tag=vmctl,security_model=none,multidevs=remap"
    "${qemu_shares[@]}"
    -device virtio-serial-pci,id=vser
    -chardev "file,id=out,path=$work/stdout.fifo" -device virtserialport,bus=vser.0,chardev=out,name=vmtest.stdout
    -chardev "file,id=err,path=$work/stderr.fifo" -device virtserialport,bus=vser.0,chardev=err,name=vmtest.stderr
)
# qboot, the minimal firmware, reaches the kernel about 0.8 s sooner than SeaBIOS (VM_SEABIOS=1).
if [ -e /usr/share/qemu/qboot.rom ] && [ -z "${VM_SEABIOS:-}" ]; then
    qemu_args+=(-bios /usr/share/qemu/qboot.rom)
fi

t0=$EPOCHREALTIME
# setpriv --pdeathsig: QEMU dies with this script even if it is killed with SIGKILL.
pdeath=()
setpriv --help 2>/dev/null | grep -q pdeathsig && pdeath=(setpriv --pdeathsig KILL --)
"${pdeath[@]}" "$qemu" "${qemu_args[@]}" </dev/null >"$work/qemu.err" 2>&1 &
qemu_pid=$!

elapsed() { local now=$EPOCHREALTIME; awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }'; }
started=
boot_s=
why=
while kill -0 "$qemu_pid" 2>/dev/null; do
    now=${EPOCHREALTIME%.*}
    if [ -z "$started" ] && [ -e "$ctl/started" ]; then
        started=1
        boot_s=$(elapsed)
    fi
    if [ $((now - ${t0%.*})) -ge "$timeout" ]; then why=timeout; break; fi
    if [ -z "$started" ] && [ $((now - ${t0%.*})) -ge "$boot_timeout" ]; then why=noboot; break; fi
    if grep -q -e 'Kernel panic - not syncing' -e 'vm-test-init: FATAL' "$work/console.log"; then
        # QEMU exits by itself (panic=-1, -no-reboot); do not wait for ever if it does not.
        for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
        break
    fi
    sleep 0.1
done
total_s=$(elapsed)
stop_qemu
stop_readers

if [ "$verbose" -eq 1 ]; then
    say "boot to command ${boot_s:-?}s, total ${total_s}s (kernel $kernel, ${memory} MB, $smp CPUs)"
fi
case $why in
    timeout) vm_failed 124 "timed out after ${timeout}s (--timeout); the VM was killed" ;;
    noboot) vm_failed 125 "the guest did not reach the command within ${boot_timeout}s (VM_BOOT_TIMEOUT)" ;;
esac
if [ -f "$ctl/status" ]; then
    rc=$(cat "$ctl/status")
    is_uint "$rc" || vm_failed 125 "the guest reported a bad exit status '$rc'"
    if [ "$verbose" -eq 1 ]; then keep_log; [ -z "$log_kept" ] || say "kernel log: $log_kept"; fi
    exit "$rc"
fi
if panic=$(grep -m1 'Kernel panic - not syncing' "$work/console.log"); then
    vm_failed 125 "the guest kernel panicked: ${panic#*] }"
fi
if fatal=$(grep -m1 'vm-test-init: FATAL' "$work/console.log"); then
    vm_failed 125 "the guest failed to set up: ${fatal#*FATAL: }"
fi
if [ -z "$started" ]; then
    vm_failed 125 "the VM stopped before reaching the command"
fi
vm_failed 125 "the VM stopped without reporting the command's exit status"
