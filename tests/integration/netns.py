"""Helpers for root integration tests: namespaces, veth pairs, wireguard-go clients, skips."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from tests.components import require_or_skip

WIREGUARD_SOCKET_DIR = Path("/var/run/wireguard")


def require_userspace_wireguard() -> None:
    """Root, network namespaces, /dev/net/tun, wireguard-go, wg and wg-quick."""
    require_or_skip(os.geteuid() == 0, "needs root for network namespaces")
    require_or_skip(Path("/dev/net/tun").exists(), "needs /dev/net/tun for wireguard-go")
    for tool in ("ip", "wireguard-go", "wg", "wg-quick", "ping"):
        require_or_skip(shutil.which(tool) is not None, f"{tool} is not installed")


def unique(prefix: str) -> str:
    # Interface names are global to the UAPI socket directory, whatever the namespace.
    return f"{prefix}{secrets.token_hex(3)}"


def run(*cmd: str, stdin: str | None = None) -> str:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


async def arun(*cmd: str, stdin: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(None if stdin is None else stdin.encode())
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode().strip()}")
    return out.decode()


@dataclass(frozen=True)
class Namespace:
    name: str

    @classmethod
    def create(cls, prefix: str) -> Namespace:
        ns = cls(unique(prefix))
        run("ip", "netns", "add", ns.name)
        run("ip", "-n", ns.name, "link", "set", "lo", "up")
        return ns

    def cmd(self, *argv: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name, *argv)

    def pids(self) -> list[int]:
        return [int(p) for p in run("ip", "netns", "pids", self.name).split()]

    def delete(self) -> None:
        # Only processes this test started live in its namespace.
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run("ip", "netns", "del", self.name)


@contextlib.contextmanager
def entered(ns: Namespace) -> Iterator[None]:
    """Move the calling thread (the event loop's) into `ns`; threads and children it
    starts meanwhile are born there too."""
    before = os.stat("/proc/thread-self/ns/net").st_ino
    pyroute2_netns.pushns(ns.name)
    try:
        yield
    finally:
        pyroute2_netns.popns()
        # Every later test would silently run in the wrong namespace otherwise.
        assert os.stat("/proc/thread-self/ns/net").st_ino == before


def veth_pair(
    a: Namespace, a_name: str, a_address: str, b: Namespace, b_name: str, b_address: str
) -> None:
    run("ip", "link", "add", a_name, "netns", a.name, "type", "veth", "peer", "name", b_name,
        "netns", b.name)  # fmt: skip
    for ns, name, address in ((a, a_name, a_address), (b, b_name, b_address)):
        run("ip", "-n", ns.name, "addr", "add", address, "dev", name)
        run("ip", "-n", ns.name, "link", "set", name, "up")


def kernel_wireguard_available(ns: Namespace) -> bool:
    probe = unique("wgk")
    done = subprocess.run(
        ["ip", "-n", ns.name, "link", "add", probe, "type", "wireguard"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return False
    run("ip", "-n", ns.name, "link", "del", probe)
    return True


class WireGuardGoDaemon:
    """A wireguard-go started by the test itself inside `ns` (e.g. the client side)."""

    def __init__(self, ns: Namespace, ifname: str) -> None:
        self.ns = ns
        self.ifname = ifname
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def socket(self) -> Path:
        return WIREGUARD_SOCKET_DIR / f"{self.ifname}.sock"

    async def start(self) -> None:
        env = {"PATH": os.environ["PATH"], "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"}
        self._proc = await asyncio.create_subprocess_exec(
            *self.ns.cmd("wireguard-go", "-f", self.ifname),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            if self.socket.exists():
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"wireguard-go for {self.ifname} did not start")

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        self._proc = None
