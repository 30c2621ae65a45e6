"""Value types, errors and the `WireGuardBackend` protocol shared by every backend."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from gateway.wireguard.keys import check_key, preshared_key_digest
from provisioning.errors import DomainError

MAX_IFNAME_LEN = 15


class BackendError(DomainError):
    """A WireGuard backend could not do what was asked."""

    status = 500
    code = "backend-error"
    title = "WireGuard backend failed"


class BackendUnavailable(BackendError):
    """The interface, its control socket or the daemon behind it is gone."""

    status = 503  # the daemon or interface may be back on a retry
    code = "backend-unavailable"
    title = "WireGuard interface unavailable"


class PeerRejected(BackendError):
    """The backend refused a peer configuration (bad key, address, value)."""

    code = "peer-rejected"
    title = "Peer configuration refused by the interface"


class Endpoint(NamedTuple):
    """A peer's public UDP endpoint as the interface last saw it."""

    host: str
    port: int

    def __str__(self) -> str:
        # Bracket IPv6 so the port separator stays unambiguous ("[::1]:51820").
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse `ip:port` or `[ipv6]:port`; raise ValueError on anything else."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"endpoint {text!r} is not host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"IPv6 endpoint {text!r} must be bracketed")
        address, _, scope = host.partition("%")
        ipaddress.ip_address(address)
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"endpoint {text!r} has an invalid port")
        return cls(host if scope else address, port)


def _canonical_network(net: str) -> str:
    """`str(ip_network(net, strict=True))`, without ipaddress's cost for canonical IPv4."""
    # Dumps and the database give canonical "a.b.c.d/n" almost always; ipaddress takes
    # ~20 us to agree, inet_pton/inet_ntop ~1 us. Anything else goes the long way.
    if type(net) is str and ":" not in net:
        address, slash, prefix = net.partition("/")
        if slash and prefix.isascii() and prefix.isdigit() and str(int(prefix)) == prefix:
            bits = int(prefix)
            try:
                packed = socket.inet_pton(socket.AF_INET, address)
            except (OSError, ValueError):  # ValueError: NUL or non-ASCII in the text
                packed = b""
            if (
                packed
                and bits <= 32
                and socket.inet_ntop(socket.AF_INET, packed) == address
                and not int.from_bytes(packed, "big") & ((1 << (32 - bits)) - 1)
            ):
                return net
    return str(ipaddress.ip_network(net, strict=True))


def _canonical_networks(networks: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_canonical_network(net) for net in networks)


def _canonical_interfaces(addresses: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(ipaddress.ip_interface(addr)) for addr in addresses)


@dataclass(frozen=True)
class PeerSpec:
    """A peer as the interface should have it."""

    public_key: bytes
    allowed_ips: tuple[str, ...]
    preshared_key: bytes | None = field(default=None, repr=False)
    persistent_keepalive: int | None = None

    def __post_init__(self) -> None:
        check_key(self.public_key, "public key")
        if self.preshared_key is not None:
            check_key(self.preshared_key, "preshared key")
        if self.persistent_keepalive is not None and not 0 <= self.persistent_keepalive < 65536:
            raise ValueError("persistent keepalive must fit in 16 bits")
        # Canonical text makes desired and dumped allowed IPs comparable as strings.
        object.__setattr__(self, "allowed_ips", _canonical_networks(tuple(self.allowed_ips)))

    @property
    def preshared_key_digest(self) -> bytes | None:
        return None if self.preshared_key is None else preshared_key_digest(self.preshared_key)


@dataclass(frozen=True)
class PeerState:
    """A peer as the interface reports it."""

    public_key: bytes
    allowed_ips: tuple[str, ...] = ()
    # A digest, not the key: enough to detect drift, nothing to leak if logged.
    preshared_key_digest: bytes | None = None
    endpoint: Endpoint | None = None
    latest_handshake: datetime | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0
    persistent_keepalive: int | None = None

    def __post_init__(self) -> None:
        check_key(self.public_key, "public key")
        object.__setattr__(self, "allowed_ips", _canonical_networks(tuple(self.allowed_ips)))

    @property
    def has_preshared_key(self) -> bool:
        return self.preshared_key_digest is not None


@dataclass(frozen=True)
class InterfaceSpec:
    """The WireGuard interface the gateway serves."""

    name: str
    private_key: bytes = field(repr=False)
    listen_port: int
    addresses: tuple[str, ...]
    mtu: int = 1420
    fwmark: int | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > MAX_IFNAME_LEN or "/" in self.name or " " in self.name:
            raise ValueError(f"interface name {self.name!r} is not a valid Linux ifname")
        check_key(self.private_key, "private key")
        if not 0 < self.listen_port < 65536:
            raise ValueError("listen port must be 1..65535")
        if not 576 <= self.mtu <= 65535:
            raise ValueError("mtu must be 576..65535")
        if self.fwmark is not None and not 0 <= self.fwmark <= 0xFFFFFFFF:
            raise ValueError("fwmark must be a 32-bit unsigned integer")
        object.__setattr__(self, "addresses", _canonical_interfaces(tuple(self.addresses)))
        # 0 is how WireGuard spells "no fwmark"; one spelling keeps comparisons simple.
        object.__setattr__(self, "fwmark", self.fwmark or None)


@dataclass(frozen=True)
class InterfaceDump:
    """One consistent read of the interface: its identity and every peer."""

    public_key: bytes | None
    listen_port: int | None
    peers: tuple[PeerState, ...] = ()
    fwmark: int | None = None


@dataclass(frozen=True)
class PeerChanges:
    """Peer edits to apply in one go: removals first, then updates, then adds."""

    adds: tuple[PeerSpec, ...] = ()
    updates: tuple[PeerSpec, ...] = ()
    removals: tuple[bytes, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.adds or self.updates or self.removals)

    def __len__(self) -> int:
        return len(self.adds) + len(self.updates) + len(self.removals)

    @property
    def public_keys(self) -> tuple[bytes, ...]:
        """Every peer these changes touch."""
        return self.removals + tuple(spec.public_key for spec in self.updates + self.adds)

    def singles(self) -> Iterator[PeerChanges]:
        """Each edit on its own, to find which one a backend rejects."""
        for key in self.removals:
            yield PeerChanges(removals=(key,))
        for spec in self.updates:
            yield PeerChanges(updates=(spec,))
        for spec in self.adds:
            yield PeerChanges(adds=(spec,))


class WireGuardBackend(Protocol):
    """Drives one WireGuard interface; every method may raise `BackendError`."""

    async def ensure_interface(self, spec: InterfaceSpec) -> None:
        """Create the interface if needed and bring key, port, addresses and MTU in line."""

    async def dump(self) -> InterfaceDump:
        """Read the interface and all its peers."""

    async def apply(self, changes: PeerChanges) -> None:
        """Apply peer edits in as few backend transactions as possible."""

    async def close(self) -> None:
        """Release resources (and stop a managed daemon)."""
