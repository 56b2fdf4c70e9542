# Functions of scripts/vm-test.sh that prepare the guest: the packages it needs, the kernel image
# QEMU boots, and the initramfs with the modules that reach the root. Sourced, not run.
# shellcheck shell=bash
# Globals from vm-test.sh: say, die, moddir, kver, INITRAMFS_MODULES, ENV_DROP.
# shellcheck disable=SC2154

VM_PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static cpio kmod xz-utils)

install_deps() {
    say "installing ${VM_PACKAGES[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${VM_PACKAGES[@]}" >/dev/null
}

# The newest Debian kernel image in /boot, or nothing.
newest_kernel() {
    find /boot -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -n 1
}

static_busybox() {
    local b
    for b in ${VM_BUSYBOX:-/bin/busybox /usr/bin/busybox}; do
        # A dynamically linked busybox cannot run in the initramfs, which has no libc.
        if [ -x "$b" ] && ! { file -L "$b" 2>/dev/null | grep -q 'dynamically linked'; }; then
            echo "$b"
            return 0
        fi
    done
    return 1
}

# Whether every host program and file the VM needs is there (the kernel only when not VM_KERNEL).
deps_present() {
    command -v "${VM_QEMU:-qemu-system-x86_64}" >/dev/null && command -v cpio >/dev/null &&
        command -v modprobe >/dev/null && static_busybox >/dev/null &&
        { [ -n "${VM_KERNEL:-}" ] || [ -n "$(newest_kernel)" ]; }
}

# Installs the packages when something is missing, unless VM_NO_INSTALL is set or there is no
# apt-get; what is still missing is then reported by the checks that follow.
ensure_deps() {
    deps_present && return 0
    if [ -n "${VM_NO_INSTALL:-}" ]; then
        say "note: something the VM needs is missing and VM_NO_INSTALL is set; not installing"
    elif command -v apt-get >/dev/null; then
        install_deps || say "note: installing ${VM_PACKAGES[*]} failed"
    fi
}

# The bzImage decompresses itself in about 9 s under TCG; QEMU boots the plain ELF vmlinux inside it
# directly (PVH entry) in no time. Extracts that ELF from image $1 into file $2.
extract_vmlinux() {
    local img=$1 out=$2 magic tool off
    for magic in $'\xfd7zXZ' $'\x28\xb5\x2f\xfd' $'\x1f\x8b\x08'; do
        case $magic in $'\xfd'*) tool="xz -dc --single-stream" ;; $'\x28'*) tool="zstd -qdc" ;; *) tool="gzip -dc" ;; esac
        command -v "${tool%% *}" >/dev/null || continue
        while IFS=: read -r off _; do
            # shellcheck disable=SC2086
            tail -c +"$((off + 1))" "$img" | $tool >"$out.part" 2>/dev/null
            if is_elf "$out.part"; then
                mv "$out.part" "$out"
                return 0
            fi
        done < <(LC_ALL=C grep -abo "$magic" "$img" | head -n 3)
    done
    rm -f "$out.part"
    return 1
}

is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

# Prints the image QEMU should boot for kernel $1 (version $2): the vmlinux extracted once into
# VM_CACHE_DIR (kept there, one per kernel; that cache is the only thing vm-test leaves), or $1.
boot_image_for() {
    local kernel=$1 kver=$2 cache key cached
    if is_elf "$kernel" || [ -n "${VM_NO_VMLINUX:-}" ]; then
        echo "$kernel"
        return
    fi
    cache=${VM_CACHE_DIR:-/var/cache/vm-test}
    key=$(stat -c '%s-%Y' "$kernel")
    cached=$cache/vmlinux-$kver-$key
    if [ -s "$cached" ]; then
        echo "$cached"
    elif mkdir -p "$cache" 2>/dev/null && extract_vmlinux "$kernel" "$cached.$$"; then
        mv "$cached.$$" "$cached"
        find "$cache" -maxdepth 1 -name "vmlinux-$kver-*" ! -name "${cached##*/}" -delete 2>/dev/null || true
        echo "$cached"
    else
        say "note: could not extract vmlinux from $kernel into $cache; booting the slower bzImage"
        echo "$kernel"
    fi
}

# Fills initramfs dir $1 (which has mods/) with the modules that reach the root, in dependency
# order (list in $1/modules.list), and writes to file $2 the names of the wanted modules ($3...)
# the guest kernel has, for stage 2's modprobe. Module files and dependencies come from
# $moddir/modules.dep ("kernel/x/a.ko: kernel/y/b.ko kernel/z/c.ko").
prepare_modules() {
    local initrd_dir=$1 load_file=$2 m n mod f line name
    shift 2
    local -A dep_of=() path_of=() seen=() builtin=()
    while IFS= read -r line; do
        mod=${line%%:*}
        name=${mod##*/}; name=${name%%.ko*}; name=${name//-/_}
        path_of[$name]=$mod
        dep_of[$mod]=${line#*:}
    done <"$moddir/modules.dep"
    if [ -f "$moddir/modules.builtin" ]; then
        while IFS= read -r line; do
            name=${line##*/}; name=${name%%.ko*}; builtin[${name//-/_}]=1
        done <"$moddir/modules.builtin"
    fi
    local load_order=()
    add_module() {
        local mod=$1 d
        [ -z "${seen[$mod]:-}" ] || return 0
        seen[$mod]=1
        for d in ${dep_of[$mod]}; do add_module "$d"; done
        load_order+=("$mod")
    }
    for m in "${INITRAMFS_MODULES[@]}" virtio_rng; do
        n=${m//-/_}
        if [ -n "${path_of[$n]:-}" ]; then
            add_module "${path_of[$n]}"
        elif [ -z "${builtin[$n]:-}" ] && [ "$m" != virtio_rng ]; then
            die "guest kernel $kver has no module $m (needed to boot from 9p)"
        fi
    done
    : >"$load_file"
    for m in "$@"; do
        [[ $m =~ ^[A-Za-z0-9_-]+$ ]] || die "bad module name: $m"
        n=${m//-/_}
        if [ -n "${path_of[$n]:-}" ]; then
            echo "$n" >>"$load_file"
        elif [ -z "${builtin[$n]:-}" ]; then
            say "note: guest kernel $kver has no module $m; not loading it"
        fi
    done
    : >"$initrd_dir/modules.list"
    for mod in "${load_order[@]}"; do
        f=${mod##*/}
        case $f in
            *.ko.xz) xz -dc "$moddir/$mod" >"$initrd_dir/mods/${f%.xz}" ;;
            *.ko.zst) zstd -qdc "$moddir/$mod" >"$initrd_dir/mods/${f%.zst}" ;;
            *.ko.gz) gzip -dc "$moddir/$mod" >"$initrd_dir/mods/${f%.gz}" ;;
            *) cp "$moddir/$mod" "$initrd_dir/mods/$f" ;;
        esac
        echo "${f%%.ko*}.ko" >>"$initrd_dir/modules.list"
    done
}

# Writes run.sh, the script the guest runs: the caller's exported environment (minus ENV_DROP and
# VM_ENV_DROP), VM_TEST_GUEST=1, the directory $1 and the command $2...
write_run_script() {
    local dir=$1 v
    shift
    local extra=()
    read -r -a extra <<<"${VM_ENV_DROP:-}"
    local -A drop=()
    for v in "${ENV_DROP[@]}" "${extra[@]}"; do drop[$v]=1; done
    # shellcheck disable=SC2016 # expanded in the guest
    echo 'exec </dev/null >"$1" 2>"$2"'
    echo 'set --'
    while IFS= read -r v; do
        [ -z "${drop[$v]:-}" ] || continue
        case $v in SSH_*|TMUX|TMUX_*|BASH_FUNC_*) continue ;; esac
        [[ $v =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        printf 'export %s=%q\n' "$v" "${!v-}"
    done < <(compgen -e)
    # Lets a test tell that it runs in the guest (and not re-enter a VM).
    echo 'export VM_TEST_GUEST=1'
    printf 'cd -- %q || { echo "vm-test: cannot enter %q in the guest" >&2; exit 125; }\n' "$dir" "$dir"
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
}
