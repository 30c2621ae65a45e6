"""A tiny initramfs for the kernel test VM: busybox, the modules that reach a 9p root, an /init.

The VM's root filesystem is the host's own, shared read-only over virtio-9p; this initramfs
only loads what the kernel needs to mount it, then hands over to the guest script in the
repository (tests/vm/guest.sh).
"""

from __future__ import annotations

import io
import lzma
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# What mounting a virtio-9p root needs; modprobe adds each one's dependencies.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
fail() { echo "vpngw-vm: $*"; echo o > /proc/sysrq-trigger; sleep 60; }
while read -r module; do
  insmod "$module" || fail "cannot load $module"
done < /modules.order
mkdir -p /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose root /newroot \\
  || fail "cannot mount the host filesystem over 9p"
[ -n "$vpngw_guest" ] || fail "no vpngw_guest= on the kernel command line"
umount /dev /proc
exec switch_root /newroot /bin/sh "$vpngw_guest"
"""


@dataclass(frozen=True)
class Entry:
    """One cpio member: a directory, a regular file or a symlink."""

    name: str
    mode: int
    data: bytes = b""


def newc_archive(entries: Iterable[Entry]) -> bytes:
    """The entries as a cpio "newc" archive, the format the kernel unpacks at boot."""
    out = io.BytesIO()

    def pad() -> None:
        out.write(b"\0" * (-out.tell() % 4))

    def member(ino: int, name: str, mode: int, data: bytes) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % value for value in fields))
        out.write(encoded)
        pad()
        out.write(data)
        pad()

    for ino, entry in enumerate(entries, start=1):
        member(ino, entry.name, entry.mode, entry.data)
    member(0, "TRAILER!!!", 0, b"")
    return out.getvalue()


def module_paths(kernel_version: str, modules: Iterable[str]) -> list[Path]:
    """The .ko files to insmod, dependencies first, each once (from modprobe's own resolver)."""
    ordered: list[Path] = []
    for module in modules:
        done = subprocess.run(
            ["modprobe", "-S", kernel_version, "--show-depends", module],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"modprobe cannot resolve {module}: {done.stderr.strip()}")
        for line in done.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            if kind != "insmod":  # "builtin <name>": nothing to load
                continue
            path = Path(rest.split()[0])
            if path not in ordered:
                ordered.append(path)
    return ordered


def module_bytes(path: Path) -> bytes:
    """A module as busybox insmod loads it: uncompressed."""
    if path.name.endswith(".ko"):
        return path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    raise RuntimeError(f"{path}: only .ko and .ko.xz modules are supported")


def build(kernel_version: str, busybox: Path) -> bytes:
    directories = ("bin", "dev", "proc", "newroot", "modules")
    entries = [Entry(d, stat.S_IFDIR | 0o755) for d in directories]
    entries.append(Entry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    entries.append(Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    loaded = []
    for path in module_paths(kernel_version, ROOT_MODULES):
        name = f"modules/{path.name.removesuffix('.xz')}"
        entries.append(Entry(name, stat.S_IFREG | 0o644, module_bytes(path)))
        loaded.append(f"/{name}")
    order = "".join(f"{name}\n" for name in loaded).encode()
    entries.append(Entry("modules.order", stat.S_IFREG | 0o644, order))
    entries.append(Entry("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode()))
    return newc_archive(entries)
