"""Kernel backend: peers over the `wireguard` generic netlink family, link via rtnetlink."""

from __future__ import annotations

import asyncio
import base64
import errno
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pyroute2 import IPRoute, WireGuard
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.generic.wireguard import (
    WG_CMD_SET_DEVICE,
    WG_GENL_VERSION,
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    wgmsg,
)

from gateway.wireguard.backend import (
    BackendError,
    BackendUnavailable,
    Endpoint,
    InterfaceDump,
    InterfaceSpec,
    PeerChanges,
    PeerRejected,
    PeerSpec,
    PeerState,
)
from gateway.wireguard.keys import ZERO_KEY, preshared_key_digest, to_base64
from gateway.wireguard.links import configure_link, create_wireguard_link

# Netlink attribute sizes (header + payload, 4-aligned), to keep each request
# well under the socket buffer as `wg` itself does.
_HEADER_BYTES = 16 + 4 + 20 + 4  # nlmsghdr, genlmsghdr, IFNAME, PEERS nest
_PEER_BYTES = 4 + 36 + 36 + 8 + 8 + 4  # nest, public key, psk, flags, keepalive, ips nest
_REMOVAL_BYTES = 4 + 36 + 8
_ALLOWED_IP_BYTES = 4 + 8 + 20 + 8  # nest, family, address (v6 worst case), mask

DEFAULT_MESSAGE_BYTES = 16384
DUMP_ATTEMPTS = 5


@dataclass(frozen=True)
class PeerEntry:
    """One element of WGDEVICE_A_PEERS, with its encoded size estimate."""

    attrs: list[list[Any]] = field(repr=False)
    size: int


def _allowed_ip_attrs(network: str) -> dict[str, Any]:
    address, _, prefix = network.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", family],
            ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(family, address)],
            ["WGALLOWEDIP_A_CIDR_MASK", int(prefix)],
        ]
    }


def removal_entry(public_key: bytes) -> PeerEntry:
    return PeerEntry(
        [["WGPEER_A_PUBLIC_KEY", to_base64(public_key)], ["WGPEER_A_FLAGS", WGPEER_F_REMOVE_ME]],
        _REMOVAL_BYTES,
    )


def spec_entries(spec: PeerSpec, *, update_only: bool, budget: int) -> list[PeerEntry]:
    """Entries setting `spec`; allowed IPs that do not fit one message continue in more."""
    per_entry = max(1, (budget - _HEADER_BYTES - _PEER_BYTES) // _ALLOWED_IP_BYTES)
    batches = [
        spec.allowed_ips[i : i + per_entry] for i in range(0, len(spec.allowed_ips), per_entry)
    ]
    key = to_base64(spec.public_key)
    flags = WGPEER_F_REPLACE_ALLOWEDIPS | (WGPEER_F_UPDATE_ONLY if update_only else 0)
    first = [
        ["WGPEER_A_PUBLIC_KEY", key],
        ["WGPEER_A_FLAGS", flags],
        # Zero key and zero interval clear a PSK / keepalive that should not be there.
        ["WGPEER_A_PRESHARED_KEY", to_base64(spec.preshared_key or ZERO_KEY)],
        ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", spec.persistent_keepalive or 0],
    ]
    head = batches[0] if batches else ()
    entries = [
        PeerEntry(
            [*first, ["WGPEER_A_ALLOWEDIPS", [_allowed_ip_attrs(n) for n in head]]],
            _PEER_BYTES + _ALLOWED_IP_BYTES * len(head),
        )
    ]
    for batch in batches[1:]:
        # The peer exists by now: add to its allowed IPs without replacing them again.
        entries.append(
            PeerEntry(
                [
                    ["WGPEER_A_PUBLIC_KEY", key],
                    ["WGPEER_A_FLAGS", WGPEER_F_UPDATE_ONLY],
                    ["WGPEER_A_ALLOWEDIPS", [_allowed_ip_attrs(n) for n in batch]],
                ],
                _PEER_BYTES + _ALLOWED_IP_BYTES * len(batch),
            )
        )
    return entries


def change_entries(changes: PeerChanges, *, budget: int) -> list[PeerEntry]:
    entries = [removal_entry(key) for key in changes.removals]
    for spec in changes.updates:
        entries += spec_entries(spec, update_only=True, budget=budget)
    for spec in changes.adds:
        entries += spec_entries(spec, update_only=False, budget=budget)
    return entries


def chunk_entries(entries: Iterable[PeerEntry], *, budget: int) -> Iterator[list[PeerEntry]]:
    """Group entries into messages of at most `budget` bytes, keeping their order."""
    chunk: list[PeerEntry] = []
    used = _HEADER_BYTES
    for entry in entries:
        if chunk and used + entry.size > budget:
            yield chunk
            chunk, used = [], _HEADER_BYTES
        chunk.append(entry)
        used += entry.size
    if chunk:
        yield chunk


def set_peers_message(interface: str, entries: Sequence[PeerEntry]) -> wgmsg:
    msg = wgmsg()
    msg["cmd"] = WG_CMD_SET_DEVICE
    msg["version"] = WG_GENL_VERSION
    msg["attrs"] = [
        ["WGDEVICE_A_IFNAME", interface],
        ["WGDEVICE_A_PEERS", [{"attrs": entry.attrs} for entry in entries]],
    ]
    return msg


class _PeerFold:
    """Accumulates one peer across the messages of a dump."""

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.psk_digest: bytes | None = None
        self.endpoint: Endpoint | None = None
        self.handshake: datetime | None = None
        self.rx = 0
        self.tx = 0
        self.keepalive: int | None = None
        self.allowed_ips: list[str] = []

    def take(self, peer: Any) -> None:
        psk = peer.get_attr("WGPEER_A_PRESHARED_KEY")
        if psk is not None:
            raw = base64.b64decode(psk)
            self.psk_digest = None if raw == ZERO_KEY else preshared_key_digest(raw)
        endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
        if endpoint is not None:
            self.endpoint = Endpoint(endpoint["addr"], endpoint["port"])
        handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
        if handshake is not None and (handshake["tv_sec"] or handshake["tv_nsec"]):
            self.handshake = datetime.fromtimestamp(handshake["tv_sec"], UTC) + timedelta(
                microseconds=handshake["tv_nsec"] // 1000
            )
        self.rx = peer.get_attr("WGPEER_A_RX_BYTES") or self.rx
        self.tx = peer.get_attr("WGPEER_A_TX_BYTES") or self.tx
        keepalive = peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL")
        if keepalive is not None:
            self.keepalive = keepalive or None
        self.allowed_ips += [ip["addr"] for ip in peer.get_attr("WGPEER_A_ALLOWEDIPS") or ()]

    def build(self) -> PeerState:
        return PeerState(
            public_key=self.public_key,
            allowed_ips=tuple(self.allowed_ips),
            preshared_key_digest=self.psk_digest,
            endpoint=self.endpoint,
            latest_handshake=self.handshake,
            rx_bytes=self.rx,
            tx_bytes=self.tx,
            persistent_keepalive=self.keepalive,
        )


def parse_dump(messages: Sequence[Any]) -> InterfaceDump:
    """Merge a multipart WG_CMD_GET_DEVICE dump.

    The kernel repeats a peer's public key at the start of the next message when
    its allowed IPs did not fit, so consecutive entries with one key are one peer.
    """
    if not messages:
        raise BackendError("empty WireGuard dump")
    first = messages[0]
    public_key = first.get_attr("WGDEVICE_A_PUBLIC_KEY")
    peers: list[PeerState] = []
    current: _PeerFold | None = None
    for msg in messages:
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or ():
            key = base64.b64decode(peer.get_attr("WGPEER_A_PUBLIC_KEY"))
            if current is None or current.public_key != key:
                if current is not None:
                    peers.append(current.build())
                current = _PeerFold(key)
            current.take(peer)
    if current is not None:
        peers.append(current.build())
    return InterfaceDump(
        public_key=None if public_key is None else base64.b64decode(public_key),
        listen_port=first.get_attr("WGDEVICE_A_LISTEN_PORT") or None,
        fwmark=first.get_attr("WGDEVICE_A_FWMARK") or None,
        peers=tuple(peers),
    )


def _netlink_error(interface: str, exc: NetlinkError) -> BackendError:
    if exc.code == errno.ENODEV:
        return BackendUnavailable(f"interface {interface} does not exist")
    if exc.code in (errno.EINVAL, errno.ERANGE, errno.EAFNOSUPPORT):
        return PeerRejected(f"{interface}: kernel refused the peer change: {exc}")
    return BackendError(f"{interface}: netlink request failed: {exc}")


class KernelBackend:
    """`WireGuardBackend` over the in-kernel WireGuard (generic netlink via pyroute2)."""

    def __init__(self, *, interface: str, message_bytes: int = DEFAULT_MESSAGE_BYTES) -> None:
        self._interface = interface
        self._budget = message_bytes

    async def ensure_interface(self, spec: InterfaceSpec) -> None:
        if spec.name != self._interface:
            raise ValueError(f"backend drives {self._interface}, not {spec.name}")
        await asyncio.to_thread(self._ensure_interface, spec)

    async def dump(self) -> InterfaceDump:
        return await asyncio.to_thread(self._dump)

    async def apply(self, changes: PeerChanges) -> None:
        if not changes.empty:
            await asyncio.to_thread(self._apply, changes)

    async def close(self) -> None:
        # The kernel link outlives the service on purpose: peers keep their tunnels.
        return None

    def _open(self) -> WireGuard:
        # WireGuard() leaks its event loop when the family is missing, so first make
        # sure the link exists (which implies the module is loaded).
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self._interface):
                raise BackendUnavailable(f"interface {self._interface} does not exist")
        try:
            return WireGuard()
        except NetlinkError as exc:
            raise BackendUnavailable(f"wireguard generic netlink family missing: {exc}") from exc

    def _ensure_interface(self, spec: InterfaceSpec) -> None:
        create_wireguard_link(spec.name)
        with self._open() as wg:
            try:
                wg.set(
                    spec.name,
                    private_key=to_base64(spec.private_key),
                    listen_port=spec.listen_port,
                    fwmark=spec.fwmark or 0,
                )
            except NetlinkError as exc:
                raise _netlink_error(spec.name, exc) from exc
        configure_link(spec.name, addresses=spec.addresses, mtu=spec.mtu)

    def _dump(self) -> InterfaceDump:
        with self._open() as wg:
            for _ in range(DUMP_ATTEMPTS):
                try:
                    messages = tuple(wg.info(self._interface))
                except NetlinkDumpInterrupted:
                    continue
                except NetlinkError as exc:
                    raise _netlink_error(self._interface, exc) from exc
                # pyroute2 0.9.7 does not raise on NLM_F_DUMP_INTR itself.
                if any(m["header"]["flags"] & NLM_F_DUMP_INTR for m in messages):
                    continue
                return parse_dump(messages)
        raise BackendError(f"{self._interface}: dump interrupted {DUMP_ATTEMPTS} times in a row")

    def _apply(self, changes: PeerChanges) -> None:
        entries = change_entries(changes, budget=self._budget)
        with self._open() as wg:
            for chunk in chunk_entries(entries, budget=self._budget):
                msg = set_peers_message(self._interface, chunk)
                try:
                    # tuple(): consume the answer even if pyroute2 hands back a generator.
                    tuple(
                        wg.nlm_request(msg, msg_type=wg.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
                    )
                except NetlinkError as exc:
                    raise _netlink_error(self._interface, exc) from exc
