"""The append-only Merkle log in the database: sequencing, checkpoints, proofs, reads."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import merkle, storage
from gateway.audit.merkle import MerkleFrontier, NodeRef
from gateway.audit.note import Checkpoint, Ed25519NoteSigner
from gateway.audit.schema import checkpoints, log_entries, log_head
from gateway.clock import Clock
from gateway.db import Database
from provisioning.errors import DomainError

HEAD_ID = 1


class AuditLogError(DomainError):
    """A request for log data that cannot be met (bad sizes, indexes)."""

    status = 503  # sizes and indexes name a tree that is still growing
    code = "audit-log-unavailable"
    title = "Audit log cannot answer"


@dataclass(frozen=True)
class LogEntry:
    index: int
    leaf: bytes | None  # None once retention has erased it
    leaf_hash: bytes
    type: str
    ts: datetime

    @property
    def redacted(self) -> bool:
        return self.leaf is None

    def event(self) -> dict[str, Any] | None:
        return None if self.leaf is None else dict(json.loads(self.leaf))


@dataclass(frozen=True)
class SequencedEntry:
    """An entry as the sequencer appended it, handed to derived-index builders."""

    index: int
    event: dict[str, Any]
    ts: datetime


Indexer = Callable[[AsyncConnection, Sequence[SequencedEntry]], Awaitable[None]]


def _parse_events(leaves: list[bytes]) -> list[dict[str, Any]]:
    """Decode every leaf's JSON, orjson in one C loop for the batch.

    The leaves were canonical when committed (no lone surrogates, integers within 53
    bits), where orjson decodes exactly as json does; if it refuses any, the batch is
    decoded leaf by leaf with json (which raises for a leaf that is not JSON).
    """
    try:
        events = list(map(orjson.loads, leaves))
        if set(map(type, events)) <= {dict}:
            return events
    except orjson.JSONDecodeError:
        pass
    return [json.loads(leaf) for leaf in leaves]


class AuditLog:
    """Reads and appends; one instance per process, several may share PostgreSQL."""

    def __init__(
        self, *, db: Database, signer: Ed25519NoteSigner, origin: str, clock: Clock,
        indexers: Sequence[Indexer] = (),
    ) -> None:
        self.db = db
        self.signer = signer
        self.origin = origin
        self.clock = clock
        self.indexers = list(indexers)

    # --- appending -------------------------------------------------------------------

    async def _locked_head(self, conn: AsyncConnection) -> tuple[int, bytes]:
        # FOR UPDATE: on PostgreSQL this row lock is what serialises sequencers of
        # several processes; on SQLite the write transaction already excludes others.
        row = (await conn.execute(
            select(log_head.c.size, log_head.c.root).where(log_head.c.id == HEAD_ID)
            .with_for_update()
        )).first()
        if row is None:
            await conn.execute(insert(log_head).values(id=HEAD_ID, size=0, root=merkle.EMPTY_ROOT))
            return 0, merkle.EMPTY_ROOT
        return int(row.size), bytes(row.root)

    async def _frontier(self, conn: AsyncConnection, size: int) -> MerkleFrontier:
        refs = merkle.frontier_refs(size)
        nodes, _ = await self._fetch_nodes(conn, refs)
        return MerkleFrontier.from_nodes(size, _require(refs, nodes))

    async def sequence(self, *, batch: int, checkpoint: bool = True) -> int:
        """Move up to `batch` outbox rows into the log; return the count.

        With `checkpoint`, the head is signed as a checkpoint at the end (also when
        nothing moved, if an earlier pass left it unsigned); without, only the head moves
        (the Sequencer signs on a cadence). Outbox deletion, leaf insertion, node
        insertion, the head update and the checkpoint commit together, so a crash leaves
        the old state or the new one.
        """
        async with self.db.write() as conn:
            size, _ = await self._locked_head(conn)
            pending = await storage.outbox_batch(conn, batch)
            if not pending.ids:
                if checkpoint and size and not await self._has_checkpoint(conn, size):
                    await self._checkpoint(conn, await self._frontier(conn, size))
                return 0
            frontier = await self._frontier(conn, size)
            events = _parse_events(pending.leaves)
            nodes = frontier.extend_levels(pending.hashes)
            times = storage.TimeColumns(conn)
            # Column by column into the driver's executemany; the payload goes in as the
            # outbox held it: sealed, never re-encrypted.
            get = dict.get
            await storage.executemany(
                conn, "INSERT INTO log_entries (idx, leaf, leaf_hash, type, tenant_id, peer_id, "
                "ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                list(zip(range(size, size + len(events)), pending.stored, pending.hashes,
                         [e["type"] for e in events], [get(e, "tenant_id") for e in events],
                         [get(e, "peer_id") for e in events],
                         [times.column(e["ts"]) for e in events], strict=True)))
            if nodes:
                await storage.executemany(
                    conn, "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            await storage.delete_outbox(conn, pending.ids)
            if self.indexers:
                sequenced = [SequencedEntry(size + i, event, times.parse(event["ts"]))
                             for i, event in enumerate(events)]
                for indexer in self.indexers:
                    await indexer(conn, sequenced)
            if checkpoint:
                await self._checkpoint(conn, frontier)
            else:
                await self._move_head(conn, frontier)
        return len(events)

    async def _has_checkpoint(self, conn: AsyncConnection, size: int) -> bool:
        return bool(await conn.scalar(select(checkpoints.c.size).where(checkpoints.c.size == size)))

    async def _move_head(self, conn: AsyncConnection, frontier: MerkleFrontier) -> bytes:
        root = frontier.root()
        await conn.execute(update(log_head).where(log_head.c.id == HEAD_ID)
                           .values(size=frontier.size, root=root))
        return root

    async def _checkpoint(self, conn: AsyncConnection, frontier: MerkleFrontier) -> None:
        root = await self._move_head(conn, frontier)
        note = Checkpoint(self.origin, frontier.size, root).sign(self.signer)
        await conn.execute(insert(checkpoints).values(
            size=frontier.size, root=root, note=note, created_at=self.clock.now()))

    # --- reading ---------------------------------------------------------------------

    async def _fetch_nodes(
        self, conn: AsyncConnection, refs: Iterable[NodeRef], *, head: bool = False
    ) -> tuple[dict[NodeRef, bytes], int]:
        """The stored hashes of refs (leaf hashes for level 0) and, with head, the tree size.

        One statement (per 15,000 refs), so a proof costs one round trip.
        """
        wanted = list(set(refs))
        found: dict[NodeRef, bytes] = {}
        current = 0
        step = storage.PARAMS_PER_QUERY // 2
        for start in range(0, max(len(wanted), 1), step):
            sql, params = _nodes_query(wanted[start:start + step], head=head and not start)
            if not sql:
                break
            for level, idx, value in await storage.fetch(conn, sql, params):
                if level < 0:
                    current = int(idx)
                else:
                    found[NodeRef(int(level), int(idx))] = bytes(value)
        return found, current

    async def latest_checkpoint(self, conn: AsyncConnection | None = None) -> tuple[int, str]:
        """(size, signed note text) of the newest checkpoint."""
        async with self._read(conn) as c:
            row = (await c.execute(select(checkpoints.c.size, checkpoints.c.note)
                                   .order_by(checkpoints.c.size.desc()).limit(1))).first()
        if row is None:
            return 0, Checkpoint(self.origin, 0, merkle.EMPTY_ROOT).sign(self.signer)
        return int(row.size), str(row.note)

    async def checkpoint_at(self, size: int) -> str | None:
        async with self.db.read() as conn:
            note = await conn.scalar(select(checkpoints.c.note).where(checkpoints.c.size == size))
        return None if note is None else str(note)

    def _read(
        self, conn: AsyncConnection | None
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """The caller's connection (its transaction) if given, else a new read."""
        return contextlib.nullcontext(conn) if conn is not None else self.db.read()

    async def size(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.scalar(
                select(log_head.c.size).where(log_head.c.id == HEAD_ID)) or 0)

    async def root_at(self, size: int, conn: AsyncConnection | None = None) -> bytes:
        plan = merkle.root_plan(size) if size >= 0 else None
        async with self._read(conn) as c:
            nodes, current = await self._fetch_nodes(c, plan.refs() if plan else (), head=True)
        _within(size, current)
        assert plan is not None
        return plan.assemble(_require(plan.refs(), nodes))[0]

    async def inclusion_proofs(
        self, indexes: Sequence[int], size: int, conn: AsyncConnection | None = None
    ) -> dict[int, list[bytes]]:
        """Proofs for many entries against one tree size, in a single node fetch."""
        valid = size >= 0 and all(0 <= index < size for index in indexes)
        plans = {index: merkle.inclusion_plan(index, size) for index in indexes} if valid else {}
        refs: set[NodeRef] = set().union(*(p.refs() for p in plans.values())) if plans else set()
        async with self._read(conn) as c:
            nodes, current = await self._fetch_nodes(c, refs, head=True)
        _within(size, current)
        for index in indexes:
            if not 0 <= index < size:
                raise AuditLogError(f"index {index} is not below tree size {size}")
        _require(refs, nodes)
        return {i: p.assemble(nodes) for i, p in plans.items()}

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        plan = (merkle.consistency_plan(old_size, new_size) if 1 <= old_size <= new_size
                else None)
        async with self.db.read() as conn:
            nodes, current = await self._fetch_nodes(conn, plan.refs() if plan else (),
                                                     head=True)
        _within(new_size, current)
        if plan is None or not new_size <= current:
            raise AuditLogError(
                f"need 1 <= from <= to <= {current} (the current tree size); "
                f"got from={old_size} to={new_size}")
        return plan.assemble(_require(plan.refs(), nodes))

    async def entries(
        self, indexes: Sequence[int], conn: AsyncConnection | None = None
    ) -> list[LogEntry]:
        """The entries at `indexes`, payloads opened (None where erased or its key deleted)."""
        async with self._read(conn) as c:
            rows = (await c.execute(select(log_entries).where(log_entries.c.idx.in_(list(indexes)))
                                    .order_by(log_entries.c.idx))).all()
            opener = storage.Opener.of(c)
        return [LogEntry(int(r.idx), opener.leaf(r.leaf, r.leaf_hash),
                         bytes(r.leaf_hash), r.type, r.ts) for r in rows]


def _nodes_query(refs: Sequence[NodeRef], *, head: bool) -> tuple[str, list[int]]:
    """One UNION of: the head row (level -1), leaf hashes (level 0), stored interior nodes."""
    parts: list[str] = []
    params: list[int] = []
    if head:
        parts.append("SELECT -1, size, root FROM log_head WHERE id = ?")
        params.append(HEAD_ID)
    leaves = sorted(r.index for r in refs if r.level == 0)
    if leaves:
        parts.append(f"SELECT 0, idx, leaf_hash FROM log_entries "  # noqa: S608
                     f"WHERE idx IN ({storage.placeholders(len(leaves))})")
        params.extend(leaves)
    levels: dict[int, list[int]] = {}
    for r in refs:
        if r.level > 0:
            levels.setdefault(r.level, []).append(r.index)
    if levels:
        conditions = []
        for level, indexes in sorted(levels.items()):
            conditions.append(f"(level = ? AND idx IN ({storage.placeholders(len(indexes))}))")
            params.append(level)
            params.extend(sorted(indexes))
        parts.append("SELECT level, idx, hash FROM log_nodes WHERE "  # noqa: S608
                     + " OR ".join(conditions))
    return " UNION ALL ".join(parts), params


def _within(size: int, current: int) -> None:
    if not 0 <= size <= current:
        raise AuditLogError(f"tree size {size} is outside 0..{current}")


def _require(refs: Iterable[NodeRef], nodes: dict[NodeRef, bytes]) -> dict[NodeRef, bytes]:
    missing = set(refs) - set(nodes)
    if missing:
        raise AuditLogError(f"log storage is missing {len(missing)} tree node(s); "
                            "run `vpngw audit verify`")
    return nodes

