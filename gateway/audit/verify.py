"""Recompute the whole audit log from its stored leaves; check it against every signed checkpoint.

``verify_log`` streams ``log_entries`` in index order, in chunks (bounded memory), and
checks, in one pass:

- indexes run 0, 1, 2, ... with no gap (a gap is a deleted entry) and nothing extra;
- every stored leaf is canonical JSON and hashes to its stored leaf hash (a mismatch is
  an edit); redacted entries (payload erased by retention) are checked by hash only and
  must be named by a ``retention.redacted`` event; sealed payloads are opened by
  gateway.audit.storage (one whose day key is deleted counts as redacted, one that does
  not authenticate as an edit);
- the Merkle root recomputed from the leaves equals the root of every stored checkpoint,
  and every checkpoint note carries a valid signature of the log's key for its origin;
- the newest checkpoint covers exactly the stored entries (fewer entries: truncation;
  more: entries no checkpoint ever signed, i.e. insertion) and agrees with the tree head;
- a sample of the stored interior nodes (levels >= 6, about 3 % of them) equals the
  recomputed ones, since inclusion and consistency proofs are served from them.

Entries that hash consistently but do not reproduce a signed root (a row rewritten with
a matching leaf hash, rows swapped, a row inserted or deleted with the indexes renumbered)
are localised by descending the stored tree under the signed root: the stored nodes are
trusted only where they hash up to the signature, and the first subtree whose recomputed
hash differs is split until the first bad pair of leaves is found, which is then classified
(swap, shift by an insertion or a deletion, or an edit).

The first problem found, in index order, ends the run: its kind and index are in the
report. Checkpoint problems carry the checkpoint's tree size as their index.

The per-entry work (indexes, hashes, canonical JSON, the subtrees of each chunk) is
verify_chunk.check_chunk; on a large log it runs in worker processes, one per core, each
over every n-th chunk in the same snapshot (verify_parallel), and this run folds their
results in index order exactly as it folds its own, so the report is the same either way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from gateway.audit import merkle
from gateway.audit.merkle import MerkleFrontier, NodeRef
from gateway.audit.note import (
    Ed25519NoteVerifier,
    InvalidSignatureError,
    NoteError,
    SignedCheckpoint,
    UnverifiedNoteError,
)
from gateway.audit.storage import LogReader, snapshot
from gateway.audit.verify_chunk import (
    NODE_CHECK_LEVEL,
    RETENTION_MARK,
    ChunkResult,
    Problem,
    ProblemKind,
    check_chunk,
    retention_ranges,
)
from gateway.audit.verify_parallel import ChunkWorkers
from gateway.audit.verify_worker import FIRST, read_entries
from gateway.db import Database

__all__ = ["CHUNK_SIZE", "PARALLEL_FROM", "Problem", "ProblemKind", "Progress", "VerifyReport",
           "default_workers", "verify_log"]

# Rows per read; a power of two so every full chunk is one complete aligned subtree.
CHUNK_SIZE = 1 << 15
# Below this many entries one process is faster: starting workers costs a few tenths
# of a second.
PARALLEL_FROM = 200_000
_CHECKPOINT_PAGE = 4096
_MAX_LEVEL = 64

Progress = Callable[[int, int], None]
_RootAt = Callable[[int], bytes]


def default_workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


@dataclass(frozen=True)
class VerifyReport:
    problem: Problem | None
    entries: int  # entries checked (up to the problem, if any)
    redacted: int
    checkpoints: int  # checkpoints whose signature and root were verified
    latest_checkpoint: int | None  # size of the newest stored checkpoint
    root: bytes  # recomputed root over the checked entries
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def rate(self) -> float:
        return self.entries / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "redacted": self.redacted,
            "checkpoints": self.checkpoints, "latest_checkpoint": self.latest_checkpoint,
            "root": base64.b64encode(self.root).decode("ascii"),
            "elapsed_seconds": round(self.elapsed, 3), "entries_per_second": int(self.rate),
            "problem": None if self.problem is None else self.problem.to_dict(),
        }


async def verify_log(
    db: Database,
    *,
    verifier: Ed25519NoteVerifier,
    origin: str,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
    check_json: bool = True,
    trusted: Sequence[str] = (),
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> VerifyReport:
    """Recompute the log in one consistent snapshot; return what was checked and the first problem.

    ``progress(done, total)`` is called after every chunk. ``check_json=False`` skips the
    canonical-JSON check of the payloads (hashes, tree and signatures are always checked).
    ``trusted`` are checkpoint notes kept outside the database (e.g. the last one a
    regulator saw): the log must still contain and reproduce each, which catches a tail
    cut off together with its stored checkpoints and tree nodes. A trusted note that is
    not validly signed raises ValueError. ``workers`` processes (default: one per core)
    check the entries of a log of at least ``parallel_from`` entries; 1 checks in-process.
    """
    if chunk_size < 2 or chunk_size & (chunk_size - 1):
        raise ValueError("chunk_size must be a power of two >= 2")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError("workers must be at least 1")
    outside = []
    for text in trusted:
        try:
            body = SignedCheckpoint.from_text(text, verifier, origin=origin).checkpoint
        except NoteError as exc:
            raise ValueError(f"a trusted checkpoint does not verify with the log key: {exc}") \
                from None
        outside.append((body.size, body.root_hash))
    started = time.perf_counter()
    async with snapshot(db) as reader:
        run = _Run(reader, verifier=verifier, origin=origin, progress=progress,
                   chunk_size=chunk_size, check_json=check_json, trusted=outside,
                   workers=workers, parallel_from=parallel_from, url=db.url)
        problem = await run.execute()
    return VerifyReport(
        problem=problem, entries=run.pos, redacted=run.redacted, checkpoints=run.checked,
        latest_checkpoint=run.latest_checkpoint, root=run.root(),
        elapsed=time.perf_counter() - started)




def _shareable(url: str) -> bool:
    """Other processes can open this database (not an in-memory SQLite one)."""
    parsed = make_url(url)
    return parsed.get_backend_name() != "sqlite" or parsed.database not in (None, "", ":memory:")


def _workers_connect(url: str, snapshot: str | None) -> dict[str, str]:
    """How a worker process reaches the same database (and, on PostgreSQL, snapshot)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"sqlite": str(parsed.database)}
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    return {"postgres": dsn, "snapshot": snapshot or ""}


# --- the run ---------------------------------------------------------------------------------


@dataclass
class _Checkpoint:
    size: int
    root: bytes
    note: str


class _Run:
    def __init__(self, reader: LogReader, *, verifier: Ed25519NoteVerifier, origin: str,
                 progress: Progress | None, chunk_size: int, check_json: bool,
                 trusted: Sequence[tuple[int, bytes]], workers: int, parallel_from: int,
                 url: str) -> None:
        self.reader = reader
        self.verifier = verifier
        self.origin = origin
        self.progress = progress
        self.chunk = chunk_size
        self.check_json = check_json
        self.workers = workers
        self.parallel_from = parallel_from
        self.url = url
        # Checkpoints held outside the database, largest size first (popped from the end).
        self._trusted = sorted(trusted, reverse=True)
        self.pos = 0  # entries [0, pos) are verified and folded into the frontier
        self.frontier = MerkleFrontier()
        self.redacted = 0
        self.checked = 0
        self.latest_checkpoint: int | None = None
        self.last_good_checkpoint = 0
        self._ckpt_buffer: list[_Checkpoint] = []
        self._ckpt_after = -1
        self._ckpt_done = False
        # Redacted index ranges, and the ranges retention.redacted events name.
        self._redacted_ranges: list[list[int]] = []
        self._retention: list[tuple[int, int]] = []
        # Earliest stored-node mismatch, and the end of the entries under it: it is
        # reported once a checkpoint covering those entries proves them right.
        self._node_problem: Problem | None = None
        self._node_problem_end = 0

    def root(self) -> bytes:
        return self.frontier.root()

    # checkpoints, streamed in size order ------------------------------------------------

    async def _peek_checkpoint(self) -> _Checkpoint | None:
        if not self._ckpt_buffer and not self._ckpt_done:
            rows = await self.reader.rows(
                "SELECT size, root, note FROM checkpoints WHERE size > ? ORDER BY size LIMIT ?",
                self._ckpt_after, _CHECKPOINT_PAGE)
            self._ckpt_buffer = [_Checkpoint(int(r[0]), bytes(r[1]), str(r[2]))
                                 for r in reversed(rows)]
            if rows:
                self._ckpt_after = int(rows[-1][0])
            else:
                self._ckpt_done = True
        return self._ckpt_buffer[-1] if self._ckpt_buffer else None

    def _open_note(self, ckpt: _Checkpoint) -> Problem | bytes:
        """The signed root of a checkpoint row, or the problem with it."""
        try:
            signed = SignedCheckpoint.from_text(ckpt.note, self.verifier, origin=self.origin)
        except (InvalidSignatureError, UnverifiedNoteError) as exc:
            return Problem(ProblemKind.BAD_SIGNATURE, ckpt.size,
                           f"checkpoint at tree size {ckpt.size} is not validly signed by "
                           f"{self.verifier.name}: {exc}", ckpt.size)
        except NoteError as exc:
            return Problem(ProblemKind.BAD_CHECKPOINT, ckpt.size,
                           f"checkpoint at tree size {ckpt.size} is malformed: {exc}", ckpt.size)
        body = signed.checkpoint
        if body.size != ckpt.size:
            return Problem(ProblemKind.BAD_CHECKPOINT, ckpt.size,
                           f"checkpoint row for tree size {ckpt.size} holds a note signed for "
                           f"size {body.size}", ckpt.size)
        if body.root_hash != ckpt.root:
            return Problem(ProblemKind.BAD_CHECKPOINT, ckpt.size,
                           f"checkpoint row for tree size {ckpt.size}: root column differs from "
                           "the signed note", ckpt.size)
        return body.root_hash

    async def _check_checkpoints(self, upto: int, root_at: _RootAt) -> Problem | None:
        """Check every checkpoint of size <= upto; root_at(size) gives the recomputed root."""
        while (ckpt := await self._peek_checkpoint()) is not None and ckpt.size <= upto:
            self._ckpt_buffer.pop()
            self.latest_checkpoint = ckpt.size
            signed_root = self._open_note(ckpt)
            if isinstance(signed_root, Problem):
                return signed_root
            if root_at(ckpt.size) != signed_root:
                return await self._diagnose(ckpt.size, signed_root)
            if self._node_problem is not None and self._node_problem_end <= ckpt.size:
                # The leaves under the node are proven by this signed root: the node is bad.
                return self._node_problem
            self.checked += 1
            self.last_good_checkpoint = ckpt.size
        while self._trusted and self._trusted[-1][0] <= upto:
            size, root = self._trusted.pop()
            if root_at(size) != root:
                return await self._diagnose(size, root)
        return None

    # main pass ----------------------------------------------------------------------------

    async def execute(self) -> Problem | None:
        head = await self.reader.rows("SELECT size, root FROM log_head WHERE id = 1")
        last = await self.reader.rows("SELECT idx FROM log_entries ORDER BY idx DESC LIMIT 1")
        total = max(int(head[0][0]) if head else 0, int(last[0][0]) + 1 if last else 0)
        problem = await self._check_checkpoints(0, lambda _size: merkle.EMPTY_ROOT)
        if problem is not None:
            return problem
        # Checkpoint (and trusted) sizes inside each chunk, whose roots the chunk's
        # subtrees must reproduce.
        sizes = [int(r[0]) for r in await self.reader.rows(
            "SELECT size FROM checkpoints WHERE size > 0 ORDER BY size")]
        sizes = sorted({*sizes, *(size for size, _ in self._trusted if size > 0)})
        # aclosing: stopping early must end the workers (or the prefetch) right away.
        async with contextlib.aclosing(self._results(total, sizes)) as results:
            async for result in results:
                problem = await self._fold_chunk(result)
                if problem is not None:
                    return problem
                if self.progress is not None:
                    self.progress(self.pos, total)
                if result.rows < self.chunk:
                    break
        return await self._finish(head)

    def _results(self, total: int, sizes: list[int]) -> AsyncGenerator[ChunkResult, None]:
        if self.workers > 1 and total >= self.parallel_from and _shareable(self.url):
            return self._from_workers(total, sizes)
        return self._in_process(total, sizes)

    async def _in_process(self, total: int, sizes: list[int]) -> AsyncGenerator[ChunkResult, None]:
        chunk = self.chunk
        # Read the next chunk while this one is checked.
        pending: asyncio.Task[list[Sequence[Any]]] | None = asyncio.ensure_future(
            read_entries(self.reader, FIRST, total, chunk))
        pos = 0
        try:
            while pending is not None:
                rows = await pending
                pending = None
                if len(rows) == chunk:
                    pending = asyncio.ensure_future(
                        read_entries(self.reader, int(rows[-1][0]) + 1, total, chunk))
                inside = [size for size in sizes if pos < size <= pos + chunk]
                result = check_chunk(rows, pos, inside, check_json=self.check_json)
                yield result
                pos += chunk
        finally:
            # Never leave a query running on a connection that is about to be released.
            if pending is not None:
                await asyncio.wait([pending])
                if not pending.cancelled():
                    pending.exception()

    async def _from_workers(self, total: int,
                            sizes: list[int]) -> AsyncGenerator[ChunkResult, None]:
        snapshot = None
        if self.reader.postgres:
            snapshot = str((await self.reader.rows("SELECT pg_export_snapshot()"))[0][0])
        async with ChunkWorkers(workers=self.workers,
                                connect=_workers_connect(self.url, snapshot),
                                chunk=self.chunk, end=total, sizes=sizes,
                                check_json=self.check_json,
                                payload_keys=None if self.reader.keys is None
                                else str(self.reader.keys.path)) as pool:
            async for result in pool.results():
                yield result

    async def _fold_chunk(self, result: ChunkResult) -> Problem | None:
        """Fold a checked chunk into the tree: its redactions and retention events, the
        stored nodes over it, the checkpoints inside it; then its problem, if any."""
        pos, good = self.pos, result.good
        if result.pos != pos:  # pragma: no cover - the sources yield chunks in order
            raise AssertionError(f"chunk at {result.pos} folded at {pos}")
        self._retention.extend(result.retention)
        self._note_redactions(result.redacted)
        before = self.frontier

        def root_at(size: int) -> bytes:
            frontier = before.copy()
            for level, h in result.prefixes[size]:
                frontier.append_subtree(level, h)
            return frontier.root()

        ranges = [(level, pos >> level, list(hashes))
                  for level, hashes in enumerate(result.upper, start=NODE_CHECK_LEVEL) if hashes]
        after = before.copy()
        for level, h in result.prefixes[pos + good]:
            carried = after.append_subtree(level, h)
            ranges += [(ref.level, ref.index, [node]) for ref, node in carried
                       if ref.level >= NODE_CHECK_LEVEL]
        await self._compare_nodes(ranges)
        ckpt_problem = await self._check_checkpoints(pos + good, root_at)
        self.frontier = after
        self.pos = pos + good
        return ckpt_problem or result.problem

    async def _compare_nodes(self, ranges: list[tuple[int, int, list[bytes]]]) -> None:
        if not ranges or self._node_problem is not None:
            return
        stored = await self.reader.nodes([(lv, first, first + len(hs)) for lv, first, hs in ranges])
        worst: tuple[int, int] | None = None
        for level, first, hashes in ranges:
            for j, h in enumerate(hashes):
                if stored.get((level, first + j)) != h:
                    if worst is None or (first + j) << level < worst[1] << worst[0]:
                        worst = (level, first + j)
                    break
        if worst is not None:
            level, index = worst
            start, end = index << level, (index + 1) << level
            what = "missing" if worst not in stored else "wrong"
            self._node_problem = Problem(
                ProblemKind.BAD_NODE, start,
                f"stored tree node level {level} index {index} (entries [{start}, {end})) is "
                f"{what}; proofs served from it would not verify")
            self._node_problem_end = end

    def _note_redactions(self, indexes: Sequence[int]) -> None:
        ranges = self._redacted_ranges
        for idx in indexes:
            self.redacted += 1
            if ranges and ranges[-1][1] == idx:
                ranges[-1][1] = idx + 1
            else:
                ranges.append([idx, idx + 1])

    async def _finish(self, head: list[Sequence[Any]]) -> Problem | None:
        count = self.pos
        if self._trusted:
            size = self._trusted[0][0]
            return Problem(ProblemKind.TRUNCATED, count,
                           f"the log holds {count} entries but a trusted checkpoint signs "
                           f"{size}: entries {count}..{size - 1} and their checkpoints were "
                           "removed", size)
        later = await self._peek_checkpoint()
        if later is not None:
            return Problem(ProblemKind.TRUNCATED, count,
                           f"the log holds {count} entries but a checkpoint signs "
                           f"{later.size}: entries {count}..{later.size - 1} were removed",
                           later.size)
        if self._node_problem is not None:
            return self._node_problem
        covered = self.latest_checkpoint or 0
        if count > covered:
            return Problem(ProblemKind.INSERTED, covered,
                           f"entries {covered}..{count - 1} are not covered by any signed "
                           "checkpoint (the sequencer signs every batch it appends)")
        beyond = await self._nodes_beyond(count)
        if beyond is not None:
            return beyond
        if not head:
            if count:
                return Problem(ProblemKind.BAD_HEAD, count, "the tree-head row is missing")
        else:
            head_size, head_root = int(head[0][0]), bytes(head[0][1])
            if head_size > count:
                return Problem(ProblemKind.TRUNCATED, count,
                               f"the tree head says {head_size} entries; {count} are stored")
            if head_size != count or head_root != self.root():
                return Problem(ProblemKind.BAD_HEAD, count,
                               f"the tree head (size {head_size}) disagrees with the "
                               f"recomputed tree (size {count})")
        return await self._check_redactions()

    async def _nodes_beyond(self, count: int) -> Problem | None:
        """A stored interior node over entries past the end betrays a removed tail."""
        levels = range(1, _MAX_LEVEL - 1)
        where = " OR ".join("(level = ? AND idx >= ?)" for _ in levels)
        params = [v for level in levels for v in (level, count >> level)]
        rows = await self.reader.rows(
            f"SELECT level, idx FROM log_nodes WHERE {where} LIMIT 1", *params)  # noqa: S608
        if not rows:
            return None
        level, index = int(rows[0][0]), int(rows[0][1])
        return Problem(ProblemKind.TRUNCATED, count,
                       f"the log holds {count} entries but the stored tree has a node over "
                       f"entries [{index << level}, {(index + 1) << level}): the tail and its "
                       "checkpoints were removed")

    async def _check_redactions(self) -> Problem | None:
        if not self._redacted_ranges:
            return None
        ranges = list(self._retention)
        # Events still in the outbox (committed with the redaction, not yet sequenced).
        for leaf in await self.reader.outbox_leaves():
            if RETENTION_MARK in leaf:
                ranges.extend(retention_ranges([leaf]))
        for lo, hi in self._redacted_ranges:
            idx = lo
            while idx < hi:
                cover = [b for a, b in ranges if a <= idx <= b]
                if not cover:
                    return Problem(ProblemKind.UNRECORDED_REDACTION, idx,
                                   f"entry {idx}'s payload was erased but no retention.redacted "
                                   "event names it")
                idx = max(cover) + 1
        return None

    # localising a root mismatch -------------------------------------------------------------

    async def _diagnose(self, size: int, signed_root: bytes) -> Problem:
        """Localise why the entries do not reproduce the signed root of checkpoint ``size``.

        Entries below the last good checkpoint are proven. The stored nodes are trusted
        only under a signed root they fold to: this checkpoint's, or if its own right edge
        is a tampered leaf hash, a later one's. Under that anchor, the first subtree whose
        recomputed hash differs from the stored one leads down to the first bad pair.
        """
        lo = self.last_good_checkpoint
        anchor = await self._anchor(size, signed_root)
        if anchor is not None:
            refs, stored = anchor
            for ref in refs:
                if ref.end <= lo or ref.level == 0:
                    continue  # proven, or a leaf hash that is its own stored value
                if await self._subtree_hash(ref.start, ref.end) != stored[ref]:
                    return await self._descend(ref, stored[ref], size, lo)
        return Problem(ProblemKind.ROOT_MISMATCH, lo,
                       f"entries [{lo}, {size}) do not hash to the signed root of checkpoint "
                       f"{size}, and the stored tree nodes do not either; cannot localise", size)

    async def _anchor(
        self, size: int, signed_root: bytes
    ) -> tuple[list[NodeRef], dict[NodeRef, bytes]] | None:
        candidates: list[tuple[int, bytes]] = [(size, signed_root)]
        for row in await self.reader.rows("SELECT size, root, note FROM checkpoints "
                                          "WHERE size > ? ORDER BY size LIMIT 32", size):
            opened = self._open_note(_Checkpoint(int(row[0]), bytes(row[1]), str(row[2])))
            if isinstance(opened, bytes):
                candidates.append((int(row[0]), opened))
        for tree_size, root in candidates:
            refs = merkle.frontier_refs(tree_size)
            stored = await self._stored(refs)
            if len(stored) == len(refs) and merkle.hash_range(refs, stored) == root:
                return refs, stored
        return None

    async def _stored(self, refs: Sequence[NodeRef]) -> dict[NodeRef, bytes]:
        found: dict[NodeRef, bytes] = {}
        inner = [(r.level, r.index, r.index + 1) for r in refs if r.level > 0]
        for (level, index), h in (await self.reader.nodes(inner)).items():
            found[NodeRef(level, index)] = h
        for r in refs:
            if r.level == 0:
                rows = await self.reader.leaf_hashes(r.index, r.index + 1, 1)
                if rows:
                    found[r] = bytes(rows[0][1])
        return found

    async def _subtree_hash(self, start: int, end: int) -> bytes:
        """MTH of the stored leaf hashes in [start, end), whole chunks at a time."""
        frontier = MerkleFrontier()
        pos = start
        while pos < end:
            rows = await self.reader.leaf_hashes(pos, end, self.chunk)
            if not rows:
                break
            levels = merkle.subtree_levels([h for _, h in rows])
            for ref in merkle.subtree_refs(0, len(rows)):
                frontier.append_subtree(ref.level, levels[ref.level][ref.index])
            pos = rows[-1][0] + 1
        return frontier.root()

    async def _descend(self, ref: NodeRef, trusted: bytes, size: int, proven: int) -> Problem:
        """Split a trusted subtree whose leaves hash differently down to the first bad pair."""
        while ref.level > 1:
            left = NodeRef(ref.level - 1, ref.index * 2)
            right = NodeRef(ref.level - 1, ref.index * 2 + 1)
            kids = await self.reader.nodes([(left.level, left.index, left.index + 2)])
            stored_left = kids.get((left.level, left.index))
            stored_right = kids.get((right.level, right.index))
            if (stored_left is None or stored_right is None
                    or merkle.node_hash(stored_left, stored_right) != trusted):
                return Problem(ProblemKind.ROOT_MISMATCH, max(ref.start, proven),
                               f"entries [{ref.start}, {ref.end}) do not hash to the signed "
                               f"root of checkpoint {size} and the stored nodes below them are "
                               "inconsistent; cannot localise further", size)
            if left.end > proven and await self._subtree_hash(left.start, left.end) != stored_left:
                ref, trusted = left, stored_left
            else:
                ref, trusted = right, stored_right
        return await self._classify(ref.index * 2, trusted, size)

    async def _classify(self, a: int, trusted: bytes, size: int) -> Problem:
        """The pair [a, a + 1] hashes to something other than the trusted node over it."""
        h = {int(r[0]): bytes(r[1]) for r in await self.reader.leaf_hashes(a, a + 4, 4)}
        x, y, z = h.get(a), h.get(a + 1), h.get(a + 2)
        node = merkle.node_hash
        if x is None or y is None:
            return Problem(ProblemKind.MISSING, a, f"entry {a} or {a + 1} is missing", size)
        if node(y, x) == trusted:
            return Problem(ProblemKind.REORDERED, a,
                           f"entries {a} and {a + 1} are swapped", size)
        if z is not None and node(y, z) == trusted:
            return Problem(ProblemKind.INSERTED, a,
                           f"an entry was inserted at {a}; the later entries moved up by one",
                           size)
        if z is not None and node(x, z) == trusted:
            return Problem(ProblemKind.INSERTED, a + 1,
                           f"an entry was inserted at {a + 1}; the later entries moved up by one",
                           size)
        nxt = (await self.reader.nodes([(1, a // 2 + 1, a // 2 + 2)])).get((1, a // 2 + 1))
        if z is not None and nxt is not None and node(y, z) == nxt:
            return Problem(ProblemKind.MISSING, a,
                           f"entry {a} or {a + 1} was deleted and the later entries renumbered "
                           "down by one", size)
        partner = await self._swap_partner(a, x, y, trusted)
        if partner is not None:
            i, j = partner
            return Problem(ProblemKind.REORDERED, i, f"entries {i} and {j} are swapped", size)
        return Problem(ProblemKind.EDITED, a,
                       f"entry {a} or {a + 1} was rewritten together with its leaf hash "
                       f"(the pair does not hash to the signed tree of checkpoint {size})", size)

    async def _swap_partner(self, a: int, x: bytes, y: bytes,
                            trusted: bytes) -> tuple[int, int] | None:
        pos = a + 2
        node = merkle.node_hash
        while True:
            rows = await self.reader.leaf_hashes(pos, 1 << 62, self.chunk)
            if not rows:
                return None
            for r in rows:
                candidate = bytes(r[1])
                if node(candidate, y) == trusted:
                    return a, int(r[0])
                if node(x, candidate) == trusted:
                    return a + 1, int(r[0])
            pos = int(rows[-1][0]) + 1
