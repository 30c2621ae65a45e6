#!/bin/sh
# PID 1 of the kernel test VM (started by tests/vm/kernel_vm.py). The root filesystem is the
# host's, read-only over 9p: load the wireguard module of the booted Debian kernel, give the
# tests writable scratch space, run pytest from the repository, report, power off.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp/home LANG=C.UTF-8

power_off() {
  sync
  echo o > /proc/sysrq-trigger
  # Builtins only from here: the 9p root goes away while the VM powers down.
  while :; do :; done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# What udev would add and the tests use (`wg setconf IF /dev/stdin`).
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr
# Scratch space: temp dirs, /run (netns mounts, /run/wireguard UAPI sockets), /var/tmp.
# A checkout that itself lives under /tmp (CI clones there) must stay visible, so /tmp is
# then left as it is and temporary files go to /var/tmp instead.
repo=$(cd "$(dirname "$0")/../.." && pwd)
for dir in /tmp /run /var/tmp; do
  case "$repo/" in
    "$dir"/*) export TMPDIR=/var/tmp HOME=/var/tmp/home ;;
    *) mount -t tmpfs tmpfs "$dir" ;;
  esac
done
mkdir -p "$HOME" /run/vm-results
mount -t 9p -o trans=virtio,version=9p2000.L results /run/vm-results || power_off
RESULTS=/run/vm-results

report() {
  echo "$1" > "$RESULTS/exit-code"
  echo "vpngw-vm: exit code $1"
  umount "$RESULTS"
  power_off
}

cut -d' ' -f1 /proc/uptime > "$RESULTS/booted-after"
echo "vpngw-vm: kernel $(uname -r) up after $(cat "$RESULTS/booted-after") s"
ip link set lo up
for module in wireguard tun veth virtio-rng; do
  modprobe "$module" || { echo "vpngw-vm: modprobe $module failed"; report 3; }
done
echo "vpngw-vm: wireguard module $(cat /sys/module/wireguard/version 2>/dev/null) loaded"

# The pytest arguments, one a line, as the launcher wrote them.
set --
while IFS= read -r arg; do
  set -- "$@" "$arg"
done < "$RESULTS/pytest-args"

cd "$repo" || report 3
# The repository is read-only here: no pytest cache, no hypothesis example database.
# Every real component is required here, the kernel module included: nothing may skip.
VPNGW_REQUIRE_ALL=1 VPNGW_REQUIRE_KERNEL_WIREGUARD=1 PYTHONDONTWRITEBYTECODE=1 \
  "$repo/.venv/bin/python" -m pytest -p no:cacheprovider -p no:hypothesispytest \
  -p tests.vm.no_skips --color=no "$@"
report $?
