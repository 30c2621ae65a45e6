"""The append-only Merkle log in the database: sequencing, checkpoints, proofs, reads."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import merkle
from gateway.audit.canonical import parse_time
from gateway.audit.merkle import MerkleFrontier, NodeRef
from gateway.audit.note import Checkpoint, Ed25519NoteSigner
from gateway.audit.schema import checkpoints, log_entries, log_head, log_nodes, outbox
from gateway.clock import Clock
from gateway.db import Database

HEAD_ID = 1


class AuditLogError(Exception):
    """A request for log data that cannot be met (bad sizes, indexes)."""


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


def _entry_row(index: int, leaf: bytes, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "idx": index, "leaf": leaf, "leaf_hash": merkle.leaf_hash(leaf),
        "type": event["type"], "tenant_id": event.get("tenant_id"),
        "peer_id": event.get("peer_id"), "ts": parse_time(event["ts"]),
    }


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
        return MerkleFrontier.from_nodes(size, await self._fetch_nodes(conn, merkle.frontier_refs(size)))

    async def sequence(self, *, batch: int) -> int:
        """Move up to `batch` outbox rows into the log and sign a checkpoint; return the count.

        Outbox deletion, leaf insertion, node insertion, the head update and the new
        checkpoint commit together, so a crash leaves the old state or the new one.
        """
        async with self.db.write() as conn:
            size, _ = await self._locked_head(conn)
            pending = (await conn.execute(
                select(outbox.c.id, outbox.c.leaf).order_by(outbox.c.id).limit(batch)
            )).all()
            if not pending:
                if size and not await self._has_checkpoint(conn, size):
                    await self._checkpoint(conn, await self._frontier(conn, size))
                return 0
            frontier = await self._frontier(conn, size)
            entries: list[dict[str, Any]] = []
            nodes: list[dict[str, Any]] = []
            sequenced: list[SequencedEntry] = []
            for offset, row in enumerate(pending):
                leaf = bytes(row.leaf)
                event = json.loads(leaf)
                entry = _entry_row(size + offset, leaf, event)
                entries.append(entry)
                nodes.extend({"level": ref.level, "idx": ref.index, "hash": h}
                             for ref, h in frontier.append(entry["leaf_hash"]))
                sequenced.append(SequencedEntry(entry["idx"], event, entry["ts"]))
            await conn.execute(insert(log_entries), entries)
            if nodes:
                await conn.execute(insert(log_nodes), nodes)
            # Delete exactly the rows read: on PostgreSQL a lower id can commit later,
            # and a range delete would drop that event without sequencing it.
            await conn.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in pending])))
            for indexer in self.indexers:
                await indexer(conn, sequenced)
            await self._checkpoint(conn, frontier)
        return len(pending)

    async def _has_checkpoint(self, conn: AsyncConnection, size: int) -> bool:
        return bool(await conn.scalar(select(checkpoints.c.size).where(checkpoints.c.size == size)))

    async def _checkpoint(self, conn: AsyncConnection, frontier: MerkleFrontier) -> None:
        root = frontier.root()
        note = Checkpoint(self.origin, frontier.size, root).sign(self.signer)
        await conn.execute(update(log_head).where(log_head.c.id == HEAD_ID)
                           .values(size=frontier.size, root=root))
        await conn.execute(insert(checkpoints).values(
            size=frontier.size, root=root, note=note, created_at=self.clock.now()))

    # --- reading ---------------------------------------------------------------------

    async def _fetch_nodes(
        self, conn: AsyncConnection, refs: Iterable[NodeRef]
    ) -> dict[NodeRef, bytes]:
        refs = set(refs)
        found: dict[NodeRef, bytes] = {}
        leaves = [r.index for r in refs if r.level == 0]
        inner = [r for r in refs if r.level > 0]
        if leaves:
            for row in await conn.execute(select(log_entries.c.idx, log_entries.c.leaf_hash)
                                          .where(log_entries.c.idx.in_(leaves))):
                found[NodeRef(0, int(row.idx))] = bytes(row.leaf_hash)
        if inner:
            cond = or_(*(and_(log_nodes.c.level == r.level, log_nodes.c.idx == r.index)
                         for r in inner))
            for row in await conn.execute(select(log_nodes).where(cond)):
                found[NodeRef(int(row.level), int(row.idx))] = bytes(row.hash)
        missing = refs - set(found)
        if missing:
            raise AuditLogError(f"log storage is missing {len(missing)} tree node(s); "
                                "run `vpngw audit verify`")
        return found

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

    def _read(self, conn: AsyncConnection | None) -> Any:
        if conn is not None:
            return _AsyncNull(conn)
        return self.db.read()

    async def size(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.scalar(select(log_head.c.size).where(log_head.c.id == HEAD_ID)) or 0)

    async def root_at(self, size: int, conn: AsyncConnection | None = None) -> bytes:
        async with self._read(conn) as c:
            await self._check_size(c, size)
            plan = merkle.root_plan(size)
            return plan.assemble(await self._fetch_nodes(c, plan.refs()))[0]

    async def _check_size(self, conn: AsyncConnection, size: int) -> int:
        current = int(await conn.scalar(select(log_head.c.size).where(log_head.c.id == HEAD_ID)) or 0)
        if not 0 <= size <= current:
            raise AuditLogError(f"tree size {size} is outside 0..{current}")
        return current

    async def inclusion_proofs(
        self, indexes: Sequence[int], size: int, conn: AsyncConnection | None = None
    ) -> dict[int, list[bytes]]:
        """Proofs for many entries against one tree size, in a single node fetch."""
        async with self._read(conn) as c:
            await self._check_size(c, size)
            plans = {}
            for index in indexes:
                if not 0 <= index < size:
                    raise AuditLogError(f"index {index} is not below tree size {size}")
                plans[index] = merkle.inclusion_plan(index, size)
            refs = set().union(*(p.refs() for p in plans.values())) if plans else set()
            nodes = await self._fetch_nodes(c, refs)
        return {i: p.assemble(nodes) for i, p in plans.items()}

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        async with self.db.read() as conn:
            current = await self._check_size(conn, new_size)
            if not 1 <= old_size <= new_size <= current:
                raise AuditLogError(
                    f"need 1 <= from <= to <= {current} (the current tree size); "
                    f"got from={old_size} to={new_size}")
            plan = merkle.consistency_plan(old_size, new_size)
            return plan.assemble(await self._fetch_nodes(conn, plan.refs()))

    async def entries(self, indexes: Sequence[int], conn: AsyncConnection | None = None) -> list[LogEntry]:
        async with self._read(conn) as c:
            rows = (await c.execute(select(log_entries).where(log_entries.c.idx.in_(list(indexes)))
                                    .order_by(log_entries.c.idx))).all()
        return [LogEntry(int(r.idx), None if r.leaf is None else bytes(r.leaf),
                         bytes(r.leaf_hash), r.type, r.ts) for r in rows]


class _AsyncNull:
    """`async with` over an existing connection (reuse a caller's transaction)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def __aenter__(self) -> AsyncConnection:
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        return None
