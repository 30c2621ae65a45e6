"""Regulator queries answered from the derived tables and the log's indexed columns."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.schema import log_entries
from gateway.egress.mapping import Derivation, EgressMap
from gateway.regulator.request import Query
from gateway.regulator.schema import address_intervals, egress_intervals, endpoint_intervals


@dataclass(frozen=True)
class Findings:
    """Log indexes answering a query, oldest first, and for egress how they were found."""

    indexes: list[int]
    derivation: Derivation | None = None

    def derivation_fields(self) -> dict[str, Any] | None:
        return self.derivation.as_dict() if self.derivation else None


# One probe of a subject's (subject, ts) index for its first entry; a statement asks for
# many subjects at once as a UNION ALL of such probes.
_FIRST_ENTRY = ("SELECT * FROM (SELECT '{kind}' AS kind, {column} AS subject, idx, type, "
                "leaf IS NOT NULL AS readable FROM log_entries WHERE {column} = ? "
                "ORDER BY ts, idx LIMIT 1) AS first_{n}")
_COLUMNS = {"peer": "peer_id", "tenant": "tenant_id"}
_PROBES_PER_STATEMENT = 200  # SQLite allows 500 parts in one compound SELECT


async def _first_entries(
    conn: AsyncConnection, subjects: list[tuple[str, str]]
) -> list[Sequence[Any]]:
    """(kind, subject, idx, type, readable) of each (kind, subject)'s first entry, in as
    few statements as the dialects allow (one up to 200 subjects)."""
    rows: list[Sequence[Any]] = []
    for at in range(0, len(subjects), _PROBES_PER_STATEMENT):
        chunk = subjects[at:at + _PROBES_PER_STATEMENT]
        sql = " UNION ALL ".join(_FIRST_ENTRY.format(kind=kind, column=_COLUMNS[kind], n=n)
                                 for n, (kind, _) in enumerate(chunk))
        rows += await storage.fetch(conn, sql, [subject for _, subject in chunk])
    return rows


async def _subject_entries(
    conn: AsyncConnection, peer_ids: set[str], tenant_ids: set[str]
) -> set[int]:
    """The entries that say who a peer belongs to and who its tenant is: the provisioning
    and the tenant's creation, or their restatements once retention erased those.

    A subject's creation is its first entry, which its (subject, ts) index finds at
    once; asking for its creation by type instead walks every entry of a tenant (about
    2,000 row reads per tenant in the benchmark). Only a subject whose first entry is no
    readable creation (retention erased it) is looked up by type, for its restatements.
    """
    subjects = ([("peer", p) for p in sorted(peer_ids)]
                + [("tenant", t) for t in sorted(tenant_ids)])
    found: set[int] = set()
    created: set[tuple[str, str]] = set()
    for kind, subject, idx, type_, readable in await _first_entries(conn, subjects):
        if readable and type_ in _CREATIONS:
            found.add(int(idx))
            created.add((kind, subject))
    restated: dict[str, list[str]] = {"peer": [], "tenant": []}
    for kind, subject in subjects:
        if (kind, subject) not in created:
            restated[kind].append(subject)
    if restated["peer"] or restated["tenant"]:
        found |= await _restatements(conn, restated["peer"], restated["tenant"])
    return found


_CREATIONS = frozenset({"peer.provisioned", "tenant.created"})


async def _restatements(
    conn: AsyncConnection, peer_ids: list[str], tenant_ids: list[str]
) -> set[int]:
    conds = []
    if peer_ids:
        conds.append(
            and_(
                log_entries.c.type.in_(("peer.provisioned", "peer.reaffirmed")),
                log_entries.c.peer_id.in_(peer_ids),
            )
        )
    if tenant_ids:
        conds.append(
            and_(
                log_entries.c.type.in_(("tenant.created", "tenant.reaffirmed")),
                log_entries.c.tenant_id.in_(tenant_ids),
            )
        )
    rows = await conn.execute(
        select(log_entries.c.idx).where(or_(*conds), log_entries.c.leaf.is_not(None))
    )
    return {int(r.idx) for r in rows}


async def _address_holders(
    conn: AsyncConnection, address: str, at: datetime, limit: int
) -> set[int]:
    """Who held a tunnel address at `at`: the grant, its release if any, the tenant."""
    t = address_intervals
    rows = (
        await conn.execute(
            select(t)
            .where(
                t.c.address == address,
                t.c.start_ts <= at,
                or_(t.c.end_ts.is_(None), t.c.end_ts > at),
            )
            .order_by(t.c.start_idx)
            .limit(limit)
        )
    ).all()
    found = {int(r.start_idx) for r in rows} | {
        int(r.end_idx) for r in rows if r.end_idx is not None
    }
    return found | await _subject_entries(conn, set(), {r.tenant_id for r in rows})


async def _egress_holder(conn: AsyncConnection, query: Query, limit: int) -> Findings:
    """The mapping in force at `at` that contains ip:port, and the holder of its tunnel address.

    Only the few mappings in force at that moment are read; the arithmetic does the rest.
    """
    assert query.ip is not None and query.port is not None and query.at is not None
    t = egress_intervals
    rows = (
        await conn.execute(
            select(t)
            .where(t.c.start_ts <= query.at, or_(t.c.end_ts.is_(None), t.c.end_ts > query.at))
            .order_by(t.c.start_idx)
        )
    ).all()
    ip = ipaddress.ip_address(query.ip)
    for row in rows:
        derivation = EgressMap.from_event(json.loads(row.fields)).derive(ip, query.port)
        if derivation is None:
            continue
        holders = await _address_holders(conn, str(derivation.tunnel_ip), query.at, limit)
        if not holders:
            return Findings([])  # a block nobody held then: nothing to attribute
        return Findings(sorted({int(row.start_idx)} | holders), derivation)
    return Findings([])


async def find_entries(conn: AsyncConnection, query: Query, *, limit: int) -> Findings:
    """Log indexes answering the query, oldest first.

    At most `limit` intervals or entries are read, but an interval brings its end and its
    subject's records, and some of these may have lost their payload to retention: the
    caller reads the entries, keeps the readable ones and cuts the list at `limit`.
    """
    if query.kind == "attribution.egress":
        return await _egress_holder(conn, query, limit)
    if query.kind == "attribution.tunnel_ip":
        assert query.ip is not None and query.at is not None
        found = await _address_holders(conn, query.ip, query.at, limit)
    elif query.kind == "attribution.endpoint":
        t = endpoint_intervals
        conds = [
            t.c.endpoint_ip == query.ip,
            t.c.start_ts <= query.at,
            or_(t.c.end_ts.is_(None), t.c.end_ts >= query.at),
        ]
        if query.port is not None:
            conds.append(t.c.endpoint_port == query.port)
        rows = (
            await conn.execute(select(t).where(*conds).order_by(t.c.start_idx).limit(limit))
        ).all()
        found = {int(r.start_idx) for r in rows} | {
            int(r.end_idx) for r in rows if r.end_idx is not None
        }
        found |= await _subject_entries(
            conn, {r.peer_id for r in rows}, {r.tenant_id for r in rows if r.tenant_id}
        )
    else:
        column = (
            log_entries.c.tenant_id if query.kind == "activity.tenant" else log_entries.c.peer_id
        )
        subject = query.tenant_id if query.kind == "activity.tenant" else query.peer_id
        rows = (
            await conn.execute(
                select(log_entries.c.idx)
                .where(
                    column == subject,
                    log_entries.c.ts >= query.start,
                    log_entries.c.ts <= query.end,
                    log_entries.c.leaf.is_not(None),
                    log_entries.c.type != "regulator.query",
                )
                .order_by(log_entries.c.idx)
                .limit(limit)
            )
        ).all()
        found = {int(r.idx) for r in rows}
    return Findings(sorted(found))
