"""Applies and reads back the vpngw nftables table through the `nft` command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.egress.ruleset import MAP4, NAT66, TABLE
from gateway.wireguard.backend import BackendError


class EgressError(BackendError):
    """nftables or the kernel refused an egress change; the message says which and why."""

    code = "egress-error"
    title = "Egress rules not applied"


class Nft:
    """`nft` in the current network namespace, never touching tables other than vpngw's."""

    def __init__(self, command: Sequence[str] = ("nft",)) -> None:
        # A prefix such as ("ip", "netns", "exec", NS, "nft") runs it in another namespace.
        self._command = tuple(command)

    async def _run(self, *args: str, stdin: str | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command,
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise EgressError(
                f"{self._command[0]} is not installed (nft: Debian package nftables)"
            ) from exc
        out, err = await proc.communicate(None if stdin is None else stdin.encode())
        if proc.returncode != 0:
            raise EgressError(f"nft {' '.join(args)} failed: {err.decode().strip()}")
        return out.decode()

    async def load(self, text: str) -> None:
        """Run a ruleset file as one transaction: all of it applies, or none."""
        await self._run("-f", "-", stdin=text)

    async def table_listing(self) -> dict[str, Any] | None:
        """The table without set contents (`-t`), or None when it does not exist."""
        try:
            return await self._json("-t", "list", "table", "inet", TABLE)
        except EgressError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise

    async def _json(self, *args: str) -> dict[str, Any]:
        return json.loads(await self._run("-j", *args))  # type: ignore[no-any-return]

    async def peer_listings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The IPv4 map and the per-peer IPv6 rules, as `nft -j` gives them."""
        return (
            await self._json("list", "map", "inet", TABLE, MAP4),
            await self._json("list", "chain", "inet", TABLE, NAT66),
        )

    async def delete_table(self) -> None:
        await self.load(f"table inet {TABLE}\ndelete table inet {TABLE}\n")


class Forwarding:
    """Per-interface IPv4/IPv6 forwarding in this namespace, nowhere else."""

    def __init__(self, proc_sys: Path = Path("/proc/sys/net")) -> None:
        self._root = proc_sys

    def _enable(self, path: Path) -> None:
        try:
            if path.read_text().strip() != "1":
                path.write_text("1\n")
        except OSError as exc:
            raise EgressError(f"cannot enable forwarding at {path}: {exc}") from exc

    async def enable(self, interfaces: tuple[str, ...], *, ipv6: bool) -> None:
        await asyncio.to_thread(self._enable_all, interfaces, ipv6)

    def _enable_all(self, interfaces: tuple[str, ...], ipv6: bool) -> None:
        # IPv4 decides per input interface, so only the tunnel and uplink forward.
        for name in interfaces:
            self._enable(self._root / "ipv4" / "conf" / name / "forwarding")
        if ipv6:
            # IPv6 has one switch per namespace.
            self._enable(self._root / "ipv6" / "conf" / "all" / "forwarding")
