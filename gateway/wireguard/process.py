"""Runs wireguard-go as a daemon that outlives the service, supervised through its UAPI socket.

The daemon is started the way `wg-quick` starts it: `wireguard-go <interface>` forks the
real daemon into its own session, with its standard streams on /dev/null, and exits. So
the daemon holds nothing of ours (no pipe whose closing would kill it with SIGPIPE, no
process group a terminal's Ctrl-C reaches), and a restart or a crash of the service
leaves the interface and every tunnel up. At start a daemon already answering on the
socket is adopted instead of replaced; one that stops answering is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import structlog
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from gateway.wireguard.backend import BackendError, BackendUnavailable
from gateway.wireguard.uapi import DEFAULT_SOCKET_DIR, UapiClient

log = structlog.get_logger(__name__)

_POLL_SECONDS = 0.05
_TERMINATE_GRACE_SECONDS = 5.0


class WireGuardGoProcess:
    """Keeps a wireguard-go daemon serving `interface`; `start()` returns once it answers."""

    def __init__(
        self,
        *,
        interface: str,
        socket_dir: Path = DEFAULT_SOCKET_DIR,
        binary: str = "wireguard-go",
        start_timeout: float = 5.0,
        restart_backoff: float = 0.5,
        max_restart_backoff: float = 30.0,
        stable_after: float = 10.0,
        watch_interval: float = 0.5,
    ) -> None:
        self._interface = interface
        self._binary = binary
        self._start_timeout = start_timeout
        self._restart_backoff = restart_backoff
        self._max_restart_backoff = max_restart_backoff
        self._stable_after = stable_after
        self._watch_interval = watch_interval
        self._probe = UapiClient(interface=interface, socket_dir=socket_dir, timeout=1.0)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._started_once = False
        self.restarts = 0

    def add_restart_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time a daemon is ready again after the first (it may be empty)."""
        self._listeners.append(callback)

    async def start(self) -> None:
        """Start supervising if not already, and wait until a daemon answers."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._supervise(), name=f"wireguard-go {self._interface}"
            )
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._ready.wait()
        except TimeoutError:
            raise BackendUnavailable(
                f"wireguard-go for {self._interface} did not open its UAPI socket "
                f"within {self._start_timeout:g} s"
            ) from None

    async def detach(self) -> None:
        """Stop supervising; the daemon, its interface and its tunnels keep running."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def stop(self) -> None:
        """Stop supervising and end the daemon: the interface and every tunnel go with it."""
        await self.detach()
        if not await self._probe.alive():
            return
        # wireguard-go exits (and removes its socket) when its interface is deleted; the
        # daemon may be adopted, not our child, so this is the one handle we surely have.
        log.info("wireguard_go.stopping", interface=self._interface)
        await asyncio.to_thread(_delete_link, self._interface)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TERMINATE_GRACE_SECONDS
        while await self._probe.alive():
            if loop.time() > deadline:
                raise BackendError(f"wireguard-go for {self._interface} did not stop")
            await asyncio.sleep(_POLL_SECONDS)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._restart_backoff
        while True:
            began = loop.time()
            try:
                if await self._probe.alive():
                    log.info("wireguard_go.adopted", interface=self._interface)
                else:
                    await self._launch()
                await self._follow()
            except BackendError as exc:
                log.warning("wireguard_go.failed", interface=self._interface, error=str(exc))
            if loop.time() - began >= self._stable_after:
                delay = self._restart_backoff
            log.warning("wireguard_go.restarting", interface=self._interface, in_seconds=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_restart_backoff)

    async def _launch(self) -> None:
        # No WG_PROCESS_FOREGROUND: wireguard-go daemonises. No LOG_LEVEL: the daemon's
        # streams are then /dev/null, so it keeps nothing of ours open; what the launcher
        # says before it forks (why it could not start) still reaches us.
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        try:
            launcher = await asyncio.create_subprocess_exec(
                self._binary,
                self._interface,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendUnavailable(f"cannot run {self._binary}: {exc}") from exc
        try:
            async with asyncio.timeout(self._start_timeout):
                output, _ = await launcher.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                launcher.kill()
            await launcher.wait()
            raise BackendUnavailable(
                f"wireguard-go for {self._interface} did not finish starting"
            ) from None
        if launcher.returncode != 0:
            said = output.decode(errors="replace").strip().splitlines()
            raise BackendUnavailable(
                f"wireguard-go for {self._interface} exited with {launcher.returncode} at "
                f"start: {said[-1] if said else 'no message'}"
            )
        await self._wait_for_socket()
        log.info("wireguard_go.started", interface=self._interface)

    async def _follow(self) -> None:
        """Serve as ready while the daemon answers; return once it stopped answering."""
        self._became_ready()
        try:
            # Polled: the daemon is not our child (it may be adopted), so no wait() tells.
            alive = True
            while alive:
                await asyncio.sleep(self._watch_interval)
                alive = await self._probe.alive()
            log.warning("wireguard_go.exited", interface=self._interface)
        finally:
            self._ready.clear()

    def _became_ready(self) -> None:
        self._ready.set()
        if self._started_once:
            self.restarts += 1
            for callback in self._listeners:
                callback()
        self._started_once = True

    async def _wait_for_socket(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while not await self._probe.alive():
            if loop.time() > deadline:
                raise BackendUnavailable(
                    f"wireguard-go for {self._interface} never opened its UAPI socket"
                )
            await asyncio.sleep(_POLL_SECONDS)


def _delete_link(ifname: str) -> None:
    """Blocking: delete the interface if it exists (run it in a thread)."""
    with IPRoute() as ipr:
        indices: list[int] = ipr.link_lookup(ifname=ifname)
        if indices:
            with contextlib.suppress(NetlinkError):  # gone meanwhile
                ipr.link("del", index=indices[0])
