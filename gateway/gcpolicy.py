"""The garbage collector of a serving process: start-up objects frozen, fewer young passes.

After start-up the process holds ~140,000 tracked objects (SQLAlchemy's tables and
compiled statements, aiohttp's routes, the OpenAPI document) that live until exit;
every full collection walked them all, one 70-90 ms pause of the event loop (a request
caught in it waits that long), and young collections ran every 700 net allocations
(a few per request). Frozen, they are never scanned again; the young threshold is raised
so a burst of requests costs fewer passes. Cycles are still collected, only later.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

from aiohttp import web

YOUNG_THRESHOLD = 10_000


async def settled_gc_ctx(_app: web.Application) -> AsyncIterator[None]:
    """A cleanup context appended last by `vpngw serve` (not by tests, which build many
    apps in one process): runs once everything else has started."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    yield
