"""Run tests inside a VM booting Debian's kernel, so the kernel WireGuard backend meets a real
`wireguard` module.

    python -m tests.vm.kernel_vm [--timeout S] [--accel tcg|kvm] [pytest args...]

The VM (qemu-system-x86_64, software emulation unless --accel kvm) boots the
newest installed linux-image kernel that ships wireguard.ko, with a small initramfs
(tests/vm/initramfs.py) that mounts the host's own filesystem read-only over virtio-9p and
hands over to tests/vm/guest.sh, which runs pytest in this repository with every component
required. The guest writes its exit code to a second, writable 9p share; this launcher exits
with it (or 1 if the VM never got that far).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.vm import initramfs

REPO = Path(__file__).resolve().parents[2]
GUEST_SCRIPT = REPO / "tests" / "vm" / "guest.sh"
# The kernel backend's contract cases and the end-to-end tunnel; the two kernel cases that
# only make sense elsewhere (no module; a wireguard-go daemon to kill) are left out, since
# nothing may skip in the VM.
DEFAULT_TESTS = (
    "tests/integration/test_backend_contract.py",
    "tests/vm/test_kernel_tunnel.py",
    "-k",
    "kernel and not without_module and not killed_wireguard_go",
    "-v",
    "--durations=5",
)


@dataclass(frozen=True)
class Kernel:
    version: str
    image: Path


def _version_key(version: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", version)]


def find_kernel(boot: Path = Path("/boot"), modules: Path = Path("/lib/modules")) -> Kernel:
    """The newest installed kernel whose modules include wireguard."""
    found = [
        Kernel(tree.name, boot / f"vmlinuz-{tree.name}")
        for tree in (modules.iterdir() if modules.is_dir() else ())
        if any((tree / "kernel/drivers/net/wireguard").glob("wireguard.ko*"))
        and (boot / f"vmlinuz-{tree.name}").is_file()
    ]
    if not found:
        raise SystemExit(
            "kernel VM: no kernel with a wireguard module in /boot and /lib/modules "
            "(apt-get install linux-image-amd64)"
        )
    return max(found, key=lambda k: _version_key(k.version))


def qemu_command(
    *, kernel: Kernel, initrd: Path, results: Path, accel: str, memory: str, cpus: int
) -> list[str]:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise SystemExit("kernel VM: qemu-system-x86_64 missing (apt-get install qemu-system-x86)")
    append = f"console=ttyS0 panic=-1 quiet loglevel=4 vpngw_guest={GUEST_SCRIPT}"
    # Software emulation works anywhere; KVM (opt-in) only where nested virtualisation does.
    machine = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg"]
    machine += [] if accel == "kvm" else ["-cpu", "max"]
    return [
        qemu,
        "-nographic",
        "-no-reboot",
        "-m", memory,
        "-smp", str(cpus),
        *machine,
        "-kernel", str(kernel.image),
        "-initrd", str(initrd),
        "-append", append,
        "-nic", "none",
        "-device", "virtio-rng-pci",
        "-virtfs", "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
    ]  # fmt: skip


def precompile() -> None:
    """Byte-compile the repository's own modules here, at native speed.

    Every Python process in the VM (pytest, `vpngw init`, `vpngw serve`) would otherwise
    compile them again from source under emulation; the dependencies already ship .pyc files.
    The __pycache__ directories are git-ignored.
    """
    sources = [str(REPO / name) for name in ("gateway", "provisioning", "tests")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *sources], check=True)


def run_vm(pytest_args: list[str], *, timeout: float, accel: str, memory: str, cpus: int) -> int:
    started = time.monotonic()
    kernel = find_kernel()
    precompile()
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("kernel VM: busybox missing (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory(prefix="vpngw-vm-") as tmp:
        initrd = Path(tmp) / "initrd.img"
        initrd.write_bytes(initramfs.build(kernel.version, Path(busybox)))
        results = Path(tmp) / "results"
        results.mkdir()
        (results / "pytest-args").write_text("".join(f"{arg}\n" for arg in pytest_args))
        cmd = qemu_command(
            kernel=kernel, initrd=initrd, results=results, accel=accel, memory=memory, cpus=cpus
        )
        print(f"kernel VM: booting {kernel.image} ({accel})", flush=True)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print(f"kernel VM: no result within {timeout:.0f} s; VM stopped", flush=True)
            return 1
        elapsed = time.monotonic() - started
        exit_file = results / "exit-code"
        if not exit_file.exists():
            print(
                f"kernel VM: the VM stopped (qemu exit {proc.returncode}) without a test result",
                flush=True,
            )
            return 1
        code = int(exit_file.read_text().strip())
        booted = (results / "booted-after").read_text().strip()
        print(
            f"kernel VM: pytest exit {code}; kernel {kernel.version}; guest up after {booted} s; "
            f"stage took {elapsed:.0f} s",
            flush=True,
        )
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds before the VM is killed"
    )
    parser.add_argument("--accel", choices=["tcg", "kvm"], default="tcg")
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", type=int, default=2)
    args, pytest_args = parser.parse_known_args(argv)
    return run_vm(
        pytest_args or list(DEFAULT_TESTS),
        timeout=args.timeout,
        accel=args.accel,
        memory=args.memory,
        cpus=args.cpus,
    )


if __name__ == "__main__":
    sys.exit(main())
