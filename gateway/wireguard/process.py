"""Runs one wireguard-go daemon in the foreground and restarts it with backoff when it dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.wireguard.backend import BackendError, BackendUnavailable
from gateway.wireguard.uapi import DEFAULT_SOCKET_DIR, UapiClient

log = structlog.get_logger(__name__)

_POLL_SECONDS = 0.05
_ADOPTED_POLL_SECONDS = 1.0
_TERMINATE_GRACE_SECONDS = 5.0


class WireGuardGoProcess:
    """Supervises `wireguard-go -f <interface>`; `start()` returns once its UAPI socket answers."""

    def __init__(
        self,
        *,
        interface: str,
        socket_dir: Path = DEFAULT_SOCKET_DIR,
        binary: str = "wireguard-go",
        log_level: str = "error",
        start_timeout: float = 5.0,
        restart_backoff: float = 0.5,
        max_restart_backoff: float = 30.0,
        stable_after: float = 10.0,
    ) -> None:
        self._interface = interface
        self._binary = binary
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._restart_backoff = restart_backoff
        self._max_restart_backoff = max_restart_backoff
        self._stable_after = stable_after
        self._probe = UapiClient(interface=interface, socket_dir=socket_dir, timeout=1.0)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._listeners: list[Callable[[], None]] = []
        self._started_once = False
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running daemon's pid (None while down or when one not ours is adopted)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def add_restart_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time a restarted daemon is ready (it comes up empty)."""
        self._listeners.append(callback)

    async def start(self) -> None:
        """Start supervising if not already, and wait until the daemon answers."""
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

    async def stop(self) -> None:
        """Stop supervising and terminate the daemon (its interface disappears with it)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._restart_backoff
        while True:
            began = loop.time()
            try:
                if await self._probe.alive():
                    await self._follow_adopted()
                else:
                    await self._run_once()
            except BackendError as exc:
                log.warning("wireguard_go.failed", interface=self._interface, error=str(exc))
            if loop.time() - began >= self._stable_after:
                delay = self._restart_backoff
            log.warning("wireguard_go.restarting", interface=self._interface, in_seconds=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_restart_backoff)

    async def _follow_adopted(self) -> None:
        # A daemon left over from an earlier run still serves the interface (and its
        # peers): use it rather than fail to create a second one, and take over once it ends.
        log.warning("wireguard_go.adopted", interface=self._interface)
        self._became_ready()
        try:
            alive = True
            while alive:
                await asyncio.sleep(_ADOPTED_POLL_SECONDS)
                alive = await self._probe.alive()
        finally:
            self._ready.clear()

    async def _run_once(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "WG_PROCESS_FOREGROUND": "1",
            "LOG_LEVEL": self._log_level,
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                self._binary,
                "-f",
                self._interface,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise BackendUnavailable(f"cannot run {self._binary}: {exc}") from exc
        self._proc = proc
        assert proc.stdout is not None
        pump = asyncio.create_task(self._pump_output(proc.stdout, proc.pid))
        try:
            await self._wait_for_socket(proc)
            self._became_ready()
            log.info("wireguard_go.started", interface=self._interface, pid=proc.pid)
            returncode = await proc.wait()
            log.warning(
                "wireguard_go.exited",
                interface=self._interface,
                pid=proc.pid,
                returncode=returncode,
            )
        finally:
            self._ready.clear()
            await self._terminate(proc)
            await pump
            self._proc = None

    def _became_ready(self) -> None:
        self._ready.set()
        if self._started_once:
            self.restarts += 1
            for callback in self._listeners:
                callback()
        self._started_once = True

    async def _wait_for_socket(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while not await self._probe.alive():
            if proc.returncode is not None:
                raise BackendUnavailable(
                    f"wireguard-go for {self._interface} exited with {proc.returncode} at start"
                )
            if loop.time() > deadline:
                raise BackendUnavailable(
                    f"wireguard-go for {self._interface} never opened its UAPI socket"
                )
            await asyncio.sleep(_POLL_SECONDS)

    @staticmethod
    async def _terminate(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(_TERMINATE_GRACE_SECONDS):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _pump_output(self, stream: asyncio.StreamReader, pid: int) -> None:
        # The daemon's own log lines carry no secrets; keep them for diagnosis.
        while line := await stream.readline():
            log.info(
                "wireguard_go.output",
                interface=self._interface,
                pid=pid,
                line=line.decode(errors="replace").rstrip(),
            )
