"""Two processes running the data plane on one database write its status tables together:
neither fails on the other's rows (the writes are upserts), and the rows end up whole."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from gateway.audit.schema import session_state
from gateway.dataplane.local import TRACKER_ROW, LocalFeed, status_row, write_peer_status
from gateway.db import Database
from gateway.settings import Settings
from gateway.wireguard.collector import CollectorSnapshot, PeerStatus
from gateway.wireguard.keys import from_base64
from provisioning.events import Event
from provisioning.schema import peer_status
from tests.helpers import create_peer, ops_token, verified_tenant

ROUNDS = 15


async def _no_record(_events: list[Event]) -> None:
    raise AssertionError("a status write records no events")


def _snapshot(keys: list[bytes], round_: int) -> CollectorSnapshot:
    at = datetime(2026, 11, 30, 3, 0, tzinfo=UTC) + timedelta(seconds=round_)
    return CollectorSnapshot(
        at=at,
        peers={k: PeerStatus(public_key=k, endpoint=None, latest_handshake=at,
                             rx_bytes=round_, tx_bytes=round_, connected=True) for k in keys},
        sessions={"round": {"n": round_}},
    )


async def test_two_data_planes_write_status_at_the_same_time(
    client: Any, settings: Settings
) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peers = [await create_peer(client, token) for _ in range(4)]
    keys = [from_base64(p["public_key"]) for p in peers]
    # Two engines, as two processes would have: on PostgreSQL nothing serialises them.
    first, second = Database(settings.database.url), Database(settings.database.url)
    try:
        for round_ in range(ROUNDS):
            # Fresh feeds remember no status, so each one writes every peer's row.
            feeds = [LocalFeed(db=db, clock=lambda: datetime.now(UTC), record=_no_record,
                               gateway_id=settings.network.gateway_id)
                     for db in (first, second)]
            snapshot = _snapshot(keys, round_)
            await asyncio.gather(*(feed.peer_status(snapshot) for feed in feeds))

        async def direct(db: Database) -> None:
            rows = [status_row(p["id"], s, s.latest_handshake or datetime.now(UTC))
                    for p, s in zip(peers, _snapshot(keys, ROUNDS).peers.values(), strict=True)]
            async with db.write() as conn:
                await write_peer_status(conn, rows + rows[:1])  # a peer twice: the last wins

        for _ in range(ROUNDS):
            await asyncio.gather(direct(first), direct(second))

        async with first.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(session_state)) == 1
            state = await conn.scalar(
                select(session_state.c.state).where(session_state.c.public_key == TRACKER_ROW))
            rows = (await conn.execute(select(peer_status))).all()
        assert state is not None and json.loads(state) == {"round": {"n": ROUNDS - 1}}
        assert sorted(r.peer_id for r in rows) == sorted(p["id"] for p in peers)
        assert {(r.rx_bytes, r.tx_bytes, r.connected) for r in rows} == {(ROUNDS, ROUNDS, 1)}
    finally:
        await first.dispose()
        await second.dispose()
