"""Userspace backend: peers over the UAPI socket (wireguard-go, boringtun), link via rtnetlink."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from pathlib import Path

from gateway.wireguard.backend import (
    BackendError,
    InterfaceDump,
    InterfaceSpec,
    PeerChanges,
    PeerRejected,
)
from gateway.wireguard.keys import public_key_of
from gateway.wireguard.links import configure_link
from gateway.wireguard.process import WireGuardGoProcess
from gateway.wireguard.uapi import (
    DEFAULT_SOCKET_DIR,
    UapiClient,
    UapiError,
    render_device_set,
    render_peer_changes,
)

# errnos a daemon gives for a request it understood but refused (bad key, value, address).
_REJECTION_ERRNOS = frozenset({errno.EINVAL, errno.EPROTO, errno.EADDRNOTAVAIL, errno.ERANGE})


class UserspaceBackend:
    """`WireGuardBackend` over UAPI; optionally runs and supervises wireguard-go itself."""

    def __init__(
        self,
        *,
        interface: str,
        socket_dir: Path = DEFAULT_SOCKET_DIR,
        process: WireGuardGoProcess | None = None,
        timeout: float = 10.0,
        keep_daemon: bool = False,
    ) -> None:
        self._interface = interface
        self._uapi = UapiClient(interface=interface, socket_dir=socket_dir, timeout=timeout)
        self._process = process
        self._keep_daemon = keep_daemon

    @classmethod
    def managed(
        cls,
        *,
        interface: str,
        binary: str = "wireguard-go",
        socket_dir: Path = DEFAULT_SOCKET_DIR,
        restart_backoff: float = 0.5,
        max_restart_backoff: float = 30.0,
        keep_daemon: bool = False,
    ) -> UserspaceBackend:
        """A backend that keeps wireguard-go running for `interface`: it adopts a daemon
        already serving it, starts one otherwise, and restarts it if it dies. With
        `keep_daemon`, `close()` leaves the daemon (and every tunnel) running."""
        process = WireGuardGoProcess(
            interface=interface,
            socket_dir=socket_dir,
            binary=binary,
            restart_backoff=restart_backoff,
            max_restart_backoff=max_restart_backoff,
        )
        return cls(
            interface=interface, socket_dir=socket_dir, process=process, keep_daemon=keep_daemon
        )

    @property
    def process(self) -> WireGuardGoProcess | None:
        return self._process

    def add_restart_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` when a supervised daemon came back up empty (e.g. `Reconciler.wake`)."""
        if self._process is not None:
            self._process.add_restart_listener(callback)

    async def ensure_interface(self, spec: InterfaceSpec) -> None:
        if spec.name != self._interface:
            raise ValueError(f"backend drives {self._interface}, not {spec.name}")
        if self._process is not None:
            await self._process.start()
        device = await self._uapi.get()
        # Send only what differs: a listen_port write makes the daemon rebind its socket.
        # The daemon answers with the key clamped, so compare the public keys.
        same_key = device.private_key is not None and public_key_of(
            device.private_key
        ) == public_key_of(spec.private_key)
        private_key = None if same_key else spec.private_key
        listen_port = None if device.listen_port == spec.listen_port else spec.listen_port
        fwmark = None if device.fwmark == spec.fwmark else spec.fwmark or 0
        if (private_key, listen_port, fwmark) != (None, None, None):
            request = render_device_set(
                private_key=private_key, listen_port=listen_port, fwmark=fwmark
            )
            try:
                await self._uapi.set(request)
            except UapiError as exc:
                raise BackendError(f"{self._interface}: settings refused: {exc}") from exc
        await asyncio.to_thread(configure_link, spec.name, addresses=spec.addresses, mtu=spec.mtu)

    async def dump(self) -> InterfaceDump:
        device = await self._uapi.get()
        return InterfaceDump(
            public_key=None if device.private_key is None else public_key_of(device.private_key),
            listen_port=device.listen_port,
            fwmark=device.fwmark,
            peers=device.peers,
        )

    async def apply(self, changes: PeerChanges) -> None:
        if changes.empty:
            return
        try:
            await self._uapi.set(render_peer_changes(changes))
        except UapiError as exc:
            if exc.errno in _REJECTION_ERRNOS:
                raise PeerRejected(f"{self._interface}: peer change refused: {exc}") from exc
            raise

    async def close(self) -> None:
        if self._process is None:
            return
        if self._keep_daemon:
            await self._process.detach()  # the next start adopts it: no tunnel drops
        else:
            await self._process.stop()
