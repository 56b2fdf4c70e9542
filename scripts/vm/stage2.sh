#!/bin/sh
# vm-test stage 2, PID 1 in the host's tree (the guest's /run/vm-test is the host's control dir):
# loads the modules in modules.load, runs run.sh (the caller's command, environment and directory)
# with its output on two virtio ports, writes its exit status to status, powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ctl=/run/vm-test
stamp() { read -r up _ </proc/uptime; echo "vm-test: [$up] $*" >/dev/console; }
stamp "stage 2: loading modules"
modules=$(cat "$ctl/modules.load")
# shellcheck disable=SC2086 # one module name a word
[ -z "$modules" ] || modprobe -a $modules 2>/dev/console || echo "vm-test: some modules did not load (above)" >/dev/console
stamp "modules loaded"
# The ports QEMU gives for the command's stdout and stderr.
out='' err=''
n=0
while :; do
    for d in /sys/class/virtio-ports/*; do
        [ -r "$d/name" ] || continue
        read -r name <"$d/name"
        case $name in
            vmtest.stdout) out=/dev/${d##*/} ;;
            vmtest.stderr) err=/dev/${d##*/} ;;
        esac
    done
    [ -n "$out" ] && [ -n "$err" ] && [ -c "$out" ] && [ -c "$err" ] && break
    out='' err=''
    n=$((n + 1))
    if [ "$n" -gt 100 ]; then
        echo "vm-test-init: FATAL: no virtio ports for the command's output" >/dev/console
        echo o >/proc/sysrq-trigger
    fi
    sleep 0.1
done
uname -r >"$ctl/started"
read -r up _ </proc/uptime
echo "vm-test: guest kernel $(uname -r) (up ${up}s)" >"$err"
stamp "running the command"
# run.sh opens the ports itself, so that what this shell says about the command (such as "Killed")
# goes to the kernel log, not into the command's stderr.
env -i /bin/bash --noprofile --norc "$ctl/run.sh" "$out" "$err" </dev/null
rc=$?
stamp "command exited with $rc"
echo "$rc" >"$ctl/status.tmp" && mv "$ctl/status.tmp" "$ctl/status"
sync
busybox poweroff -f
echo o >/proc/sysrq-trigger
sleep 10
