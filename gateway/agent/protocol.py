"""The agent protocol's JSON documents (pure): desired state down, observations up.

Both sides use these functions, so the agent and the control plane cannot disagree on a
field. Every decoding failure names the field (`events[3].endpoint`) and what to send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.audit.canonical import format_time
from gateway.wireguard.backend import Endpoint
from gateway.wireguard.collector import PeerStatus
from gateway.wireguard.keys import from_base64, to_base64
from gateway.wireguard.sessions import SessionEnded, SessionEvent, SessionRoamed, SessionStarted
from provisioning.errors import DomainError, InvalidInput
from provisioning.validation import timestamp

BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Small enough for the control plane's body cap (server.max_body_bytes, 64 KiB default).
MAX_BATCH_EVENTS = 200
MAX_STATUS_PEERS = 200
SESSION_TYPES = ("session.started", "session.roamed", "session.ended")


class EventNotAllowed(DomainError):
    """An agent reported something other than its own peers' sessions."""

    status = 403
    code = "event-not-allowed"
    title = "Agents report sessions of their own gateway's peers only"


@dataclass(frozen=True)
class DesiredPeerDoc:
    peer_id: str
    public_key: str
    preshared_key: str | None
    tunnel_ips: tuple[str, ...]


@dataclass(frozen=True)
class GatewayDoc:
    id: str
    name: str
    endpoint: str
    pools: tuple[str, ...]
    egress: Mapping[str, Any] | None  # the logged egress.configured fields, plus "interface"


@dataclass(frozen=True)
class StateDoc:
    gateway: GatewayDoc
    revision: int
    full: bool
    peers: tuple[DesiredPeerDoc, ...]
    removed: tuple[str, ...]


def state_to_wire(state: StateDoc) -> dict[str, Any]:
    g = state.gateway
    return {
        "gateway": {"id": g.id, "name": g.name, "endpoint": g.endpoint, "pools": list(g.pools),
                    "egress": dict(g.egress) if g.egress is not None else None},
        "revision": state.revision,
        "full": state.full,
        "peers": [{"peer_id": p.peer_id, "public_key": p.public_key,
                   "preshared_key": p.preshared_key, "tunnel_ips": list(p.tunnel_ips)}
                  for p in state.peers],
        "removed": list(state.removed),
    }


def state_from_wire(doc: Mapping[str, Any]) -> StateDoc:
    g = doc["gateway"]
    return StateDoc(
        gateway=GatewayDoc(str(g["id"]), str(g["name"]), str(g["endpoint"]),
                           tuple(str(p) for p in g["pools"]), g.get("egress")),
        revision=int(doc["revision"]),
        full=bool(doc["full"]),
        peers=tuple(DesiredPeerDoc(str(p["peer_id"]), str(p["public_key"]),
                                   p.get("preshared_key"), tuple(p["tunnel_ips"]))
                    for p in doc["peers"]),
        removed=tuple(str(r) for r in doc["removed"]),
    )


def event_to_wire(e: SessionEvent) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": e.type, "public_key": to_base64(e.public_key),
                           "at": format_time(e.at)}
    if isinstance(e, SessionStarted):
        doc.update(endpoint=e.endpoint, first_handshake=format_time(e.first_handshake))
    elif isinstance(e, SessionRoamed):
        doc.update(endpoint=e.new_endpoint, old_endpoint=e.old_endpoint)
    else:
        doc.update(endpoint=e.endpoint, first_handshake=format_time(e.first_handshake),
                   last_handshake=format_time(e.last_handshake), rx_bytes=e.rx_bytes,
                   tx_bytes=e.tx_bytes)
    return doc


_FIELDS = {
    "session.started": {"type", "public_key", "at", "endpoint", "first_handshake"},
    "session.roamed": {"type", "public_key", "at", "endpoint", "old_endpoint"},
    "session.ended": {"type", "public_key", "at", "endpoint", "first_handshake",
                      "last_handshake", "rx_bytes", "tx_bytes"},
}


def _key(field: str, value: object) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        return from_base64(value)
    except ValueError:
        raise InvalidInput(field, "must be a WireGuard public key (44 chars base64)") from None


def _endpoint(field: str, value: object) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(Endpoint.parse(value))
    except ValueError:
        raise InvalidInput(field, "must be ip:port or [ipv6]:port") from None


def _count(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise InvalidInput(field, "must be a non-negative integer")
    return value


def event_from_wire(doc: object, index: int) -> SessionEvent:
    at = f"events[{index}]"
    if not isinstance(doc, dict):
        raise InvalidInput(at, "must be an object")
    kind = doc.get("type")
    if kind not in _FIELDS:
        raise EventNotAllowed(
            f"{at}.type {kind!r} is not an event an agent may report; agents send only "
            f"{', '.join(SESSION_TYPES)}", field=f"{at}.type",
        )
    fields = _FIELDS[str(kind)]
    unknown = sorted(set(doc) - fields)
    if unknown:
        raise InvalidInput(f"{at}.{unknown[0]}", f"unknown field for {kind}")
    missing = sorted(fields - set(doc))
    if missing:
        raise InvalidInput(f"{at}.{missing[0]}", f"required for {kind}")
    key = _key(f"{at}.public_key", doc["public_key"])
    when = timestamp(f"{at}.at", doc["at"])
    if kind == "session.started":
        return SessionStarted(key, when, _endpoint(f"{at}.endpoint", doc["endpoint"]),
                              timestamp(f"{at}.first_handshake", doc["first_handshake"]))
    if kind == "session.roamed":
        return SessionRoamed(key, when, _endpoint(f"{at}.old_endpoint", doc["old_endpoint"]),
                             _endpoint(f"{at}.endpoint", doc["endpoint"]))
    return SessionEnded(
        key, when, _endpoint(f"{at}.endpoint", doc["endpoint"]),
        timestamp(f"{at}.first_handshake", doc["first_handshake"]),
        timestamp(f"{at}.last_handshake", doc["last_handshake"]),
        _count(f"{at}.rx_bytes", doc["rx_bytes"]), _count(f"{at}.tx_bytes", doc["tx_bytes"]),
    )


def batch_from_wire(body: Mapping[str, Any]) -> tuple[str, list[SessionEvent]]:
    batch_id = body.get("batch_id")
    if not isinstance(batch_id, str) or not BATCH_ID.match(batch_id):
        raise InvalidInput("batch_id", "must be 8-64 characters of A-Z a-z 0-9 _ - (chosen "
                           "by the agent, the same on every retry)")
    events = body.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise InvalidInput("events", f"must be a list of 1 to {MAX_BATCH_EVENTS} events")
    return batch_id, [event_from_wire(e, i) for i, e in enumerate(events)]


def status_to_wire(status: PeerStatus) -> dict[str, Any]:
    return {
        "public_key": to_base64(status.public_key),
        "endpoint": str(status.endpoint) if status.endpoint else None,
        "latest_handshake": format_time(status.latest_handshake)
        if status.latest_handshake else None,
        "rx_bytes": status.rx_bytes,
        "tx_bytes": status.tx_bytes,
        "connected": status.connected,
    }


_STATUS_FIELDS = {"public_key", "endpoint", "latest_handshake", "rx_bytes", "tx_bytes",
                  "connected"}


def status_from_wire(doc: object, index: int) -> PeerStatus:
    at = f"peers[{index}]"
    if not isinstance(doc, dict) or set(doc) != _STATUS_FIELDS:
        raise InvalidInput(at, f"must be an object with exactly {sorted(_STATUS_FIELDS)}")
    endpoint = doc["endpoint"]
    latest = doc["latest_handshake"]
    if not isinstance(doc["connected"], bool):
        raise InvalidInput(f"{at}.connected", "must be true or false")
    return PeerStatus(
        public_key=_key(f"{at}.public_key", doc["public_key"]),
        endpoint=None if endpoint is None
        else Endpoint.parse(_endpoint(f"{at}.endpoint", endpoint)),
        latest_handshake=None if latest is None else timestamp(f"{at}.latest_handshake", latest),
        rx_bytes=_count(f"{at}.rx_bytes", doc["rx_bytes"]),
        tx_bytes=_count(f"{at}.tx_bytes", doc["tx_bytes"]),
        connected=doc["connected"],
    )


def statuses_from_wire(items: object) -> list[PeerStatus]:
    if not isinstance(items, list) or len(items) > MAX_STATUS_PEERS:
        raise InvalidInput("peers", f"must be a list of at most {MAX_STATUS_PEERS} statuses")
    return [status_from_wire(d, i) for i, d in enumerate(items)]


def observed_time(e: SessionEvent) -> datetime:
    return e.at


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
