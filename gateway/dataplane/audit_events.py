"""Session observations as the audit events of DESIGN section 5 (pure)."""

from __future__ import annotations

from gateway.audit.canonical import format_time
from gateway.wireguard.sessions import SessionEnded, SessionEvent, SessionRoamed, SessionStarted
from provisioning.events import Event, EventValue


def session_event(e: SessionEvent, *, peer_id: str, tenant_id: str, gateway_id: str,
                  observed_at: str | None = None) -> Event:
    """The audit event for one collector observation (`observed_at`: an agent's own time
    of it, RFC 3339, recorded when it was reported later)."""
    common: dict[str, EventValue] = {"peer_id": peer_id, "tenant_id": tenant_id,
                                     "gateway_id": gateway_id}
    if observed_at is not None:
        common["observed_at"] = observed_at
    if isinstance(e, SessionStarted):
        return Event(
            e.type,
            {**common, "endpoint": e.endpoint, "first_handshake": format_time(e.first_handshake)},
        )
    if isinstance(e, SessionRoamed):
        return Event(e.type, {**common, "endpoint": e.new_endpoint, "old_endpoint": e.old_endpoint})
    assert isinstance(e, SessionEnded)
    return Event(
        e.type,
        {
            **common,
            "endpoint": e.endpoint,
            "rx_bytes": e.rx_bytes,
            "tx_bytes": e.tx_bytes,
            "first_handshake": format_time(e.first_handshake),
            "last_handshake": format_time(e.last_handshake),
        },
    )
