"""Wakes long-polls when a gateway's desired state changes: in this process directly, in
other control-plane processes through PostgreSQL LISTEN/NOTIFY (no extra broker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

log = structlog.get_logger("vpngw.statewatch")


class StateWatch:
    """One asyncio.Event per gateway, replaced after each wake so every waiter sees it once.

    Callers take `event(gateway_id)` *before* reading the revision, so a commit between the
    read and the wait still wakes them.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, gateway_id: str) -> asyncio.Event:
        return self._events.setdefault(gateway_id, asyncio.Event())

    def changed(self, gateway_ids: Iterable[str]) -> None:
        for gateway_id in gateway_ids:
            event = self._events.pop(gateway_id, None)
            if event is not None:
                event.set()

    @staticmethod
    async def wait(event: asyncio.Event, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
        return event.is_set()


async def listen_forever(dsn: str, channel: str, watch: StateWatch, *, retry: float = 1.0) -> None:
    """Hold a LISTEN connection to PostgreSQL, reconnecting after failures."""
    import asyncpg  # PostgreSQL only

    while True:
        conn = None
        try:
            conn = await asyncpg.connect(dsn)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(
                channel, lambda _c, _pid, _channel, payload: watch.changed([payload])
            )
            log.info("listening for gateway state changes", channel=channel)
            await lost.wait()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("state listener lost; reconnecting", error=str(exc))
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()
        # Whatever changed while disconnected: every waiter re-reads its revision.
        watch.changed(list(watch._events))
        await asyncio.sleep(retry)
