"""JSON shapes of domain values as the APIs return them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.egress.mapping import EgressMap
from provisioning.peers import Peer
from provisioning.tenants import Tenant, Transition
from provisioning.tokens import TokenInfo
from provisioning.validation import rfc3339


def _time(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def tenant_view(t: Tenant) -> dict[str, Any]:
    return {
        "id": t.id,
        "legal_name": t.legal_name,
        "registration_number": t.registration_number,
        "tax_id": t.tax_id,
        "country": t.country,
        "contact_email": t.contact_email,
        "max_peers": t.max_peers,
        "status": t.status.value,
        "created_at": _time(t.created_at),
        "updated_at": _time(t.updated_at),
    }


def transition_view(t: Transition) -> dict[str, Any]:
    return {
        "from": t.from_status,
        "to": t.to_status,
        "actor": t.actor,
        "at": _time(t.at),
        "evidence_reference": t.evidence_reference,
        "reason": t.reason,
    }


def token_view(t: TokenInfo) -> dict[str, Any]:
    return {
        "id": t.token_id,
        "role": t.role.value,
        "tenant_id": t.tenant_id,
        "label": t.label,
        "created_at": _time(t.created_at),
        "created_by": t.created_by,
        "revoked_at": _time(t.revoked_at),
    }


def egress_block(egress: EgressMap | None, tunnel_ips: Sequence[str]) -> dict[str, Any] | None:
    """Where a peer's traffic leaves (public address and port block), if it is carried out."""
    if egress is None:
        return None
    for text in tunnel_ips:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv4Address):
            block = egress.block_of(address)
            return block.as_dict() if block else None
    return None


def peer_view(
    p: Peer, status: dict[str, Any] | None = None, egress: EgressMap | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": p.id,
        "name": p.name,
        "public_key": p.public_key,
        "tunnel_ips": list(p.tunnel_ips),
        "status": p.status,
        "preshared_key": p.has_preshared_key,
        "created_at": _time(p.created_at),
        "expires_at": _time(p.expires_at),
        "revoked_at": _time(p.revoked_at),
        "key_rotated_at": _time(p.key_rotated_at),
        "gateway_id": p.gateway_id,
    }
    if p.private_key:
        doc["private_key"] = p.private_key
    if status is not None:
        doc["connection"] = status
    block = egress_block(egress, p.tunnel_ips) if p.status == "active" else None
    if block is not None:
        doc["egress"] = block
    return doc


def page(items: list[dict[str, Any]], *, limit: int) -> dict[str, Any]:
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}
