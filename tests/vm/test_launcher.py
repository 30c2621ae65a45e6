"""The kernel VM launcher's pure parts: the initramfs archive format and the kernel choice."""

from __future__ import annotations

import lzma
import stat
from pathlib import Path

import pytest

from tests.vm.initramfs import Entry, module_bytes, newc_archive
from tests.vm.kernel_vm import find_kernel


def test_newc_archive_matches_the_format_the_kernel_unpacks() -> None:
    archive = newc_archive([Entry("a", stat.S_IFREG | 0o644, b"xy")])
    # magic, ino 1, mode 0100644, uid, gid, nlink 1, mtime, size 2, 4 device numbers,
    # name size 2 ("a\0"), check; the name and the data each padded to 4 bytes.
    header = "070701" + "".join(f"{v:08X}" for v in (1, 0o100644, 0, 0, 1, 0, 2, 0, 0, 0, 0, 2, 0))
    trailer = "070701" + "".join(f"{v:08X}" for v in (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0))
    assert archive == (
        header.encode() + b"a\0" + b"xy\0\0" + trailer.encode() + b"TRAILER!!!\0" + b"\0" * 3
    )
    assert len(archive) % 4 == 0


def _kernel(boot: Path, modules: Path, version: str, *, wireguard: bool) -> None:
    (boot / f"vmlinuz-{version}").write_bytes(b"")
    tree = modules / version / "kernel/drivers/net/wireguard"
    tree.mkdir(parents=True)
    if wireguard:
        (tree / "wireguard.ko").write_bytes(b"")


def test_the_newest_kernel_with_a_wireguard_module_is_booted(tmp_path: Path) -> None:
    boot, modules = tmp_path / "boot", tmp_path / "modules"
    boot.mkdir()
    _kernel(boot, modules, "6.1.0-9-amd64", wireguard=True)
    _kernel(boot, modules, "6.1.0-10-amd64", wireguard=True)
    _kernel(boot, modules, "6.12.0-1-amd64", wireguard=False)
    (modules / "6.13.0-1-amd64").mkdir()  # modules left behind, no image in /boot
    kernel = find_kernel(boot, modules)
    assert kernel.version == "6.1.0-10-amd64"
    assert kernel.image == boot / "vmlinuz-6.1.0-10-amd64"


def test_no_kernel_with_wireguard_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="apt-get install linux-image-amd64"):
        find_kernel(tmp_path / "boot", tmp_path / "modules")


def test_compressed_modules_go_in_uncompressed(tmp_path: Path) -> None:
    plain, packed = tmp_path / "a.ko", tmp_path / "b.ko.xz"
    plain.write_bytes(b"\x7fELF plain")
    packed.write_bytes(lzma.compress(b"\x7fELF packed"))
    assert module_bytes(plain) == b"\x7fELF plain"
    assert module_bytes(packed) == b"\x7fELF packed"
    with pytest.raises(RuntimeError, match=r"only \.ko and \.ko\.xz"):
        module_bytes(tmp_path / "c.ko.zst")
