"""The checks of one chunk of stored log entries that need nothing outside it.

Pure: rows in, a ChunkResult out. `audit verify` runs it in its worker processes (and
in-process for small logs); the run in verify.py folds the results in index order into
the tree, the checkpoints and the report. The problem kinds live here because a worker
names the first bad entry of its chunk.
"""

from __future__ import annotations

import enum
import hashlib
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.audit import merkle
from gateway.audit.canonical import first_noncanonical

__all__ = [
    "NODE_CHECK_LEVEL",
    "RETENTION_MARK",
    "ChunkResult",
    "Problem",
    "ProblemKind",
    "check_chunk",
    "retention_ranges",
]

# Stored interior nodes at this level and above are compared with the recomputed ones
# on the main pass (1/32 of all nodes); below it they are consulted only to localise.
NODE_CHECK_LEVEL = 6
RETENTION_MARK = b'"type":"retention.redacted"'

_sha256 = hashlib.sha256
_LEAF = b"\x00"
_FIRST, _SECOND, _THIRD = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


class ProblemKind(enum.StrEnum):
    EDITED = "edited"  # an entry's bytes or hash differ from what was signed
    MISSING = "missing"  # an entry was deleted
    INSERTED = "inserted"  # an entry was added that the signed tree does not contain
    REORDERED = "reordered"  # entries were swapped
    TRUNCATED = "truncated"  # the newest entries were removed
    BAD_SIGNATURE = "bad_signature"  # a checkpoint note is not signed by the log key
    BAD_CHECKPOINT = "bad_checkpoint"  # a checkpoint row is malformed or inconsistent
    MALFORMED = "malformed"  # a leaf hashes correctly but is not canonical JSON
    ROOT_MISMATCH = "root_mismatch"  # leaves differ from a signed root; cannot localise
    BAD_NODE = "bad_node"  # a stored tree node is wrong (served proofs would fail)
    BAD_HEAD = "bad_head"  # the tree-head row disagrees with the entries
    UNRECORDED_REDACTION = "unrecorded_redaction"  # payload erased without a retention event


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    index: int
    detail: str
    checkpoint_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "index": self.index, "detail": self.detail,
                "checkpoint_size": self.checkpoint_size}


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk of rows read from index ``pos`` (``idx >= pos``, in order) holds."""

    pos: int
    rows: int  # rows read; fewer than asked means the log ends in this chunk
    good: int  # entries [pos, pos + good) pass every check here
    problem: Problem | None  # why entry pos + good does not, if it does not
    redacted: tuple[int, ...]  # good entries whose payload retention erased
    retention: tuple[tuple[int, int], ...]  # (from, to) of retention.redacted events seen
    # upper[l - NODE_CHECK_LEVEL][j]: the node at level l over the good entries' j-th
    # aligned block of 2**l, relative to pos (complete blocks only).
    upper: tuple[tuple[bytes, ...], ...]
    # For each tree size asked for in (pos, pos + good], and for pos + good: the
    # (level, hash) of the subtree_refs(pos, size) blocks, largest first.
    prefixes: dict[int, tuple[tuple[int, bytes], ...]]


def check_chunk(rows: Sequence[Sequence[Any]], pos: int, sizes: Sequence[int], *,
                check_json: bool) -> ChunkResult:
    """Check rows (idx, leaf or None, leaf_hash) expected to hold entries pos, pos + 1, ...

    In order: indexes contiguous from pos; every leaf hashes to its stored hash (an
    erased leaf is taken at its stored hash); every payload is canonical JSON. The
    first failure ends the good prefix. ``sizes`` are the checkpoint sizes that fall in
    this chunk, whose tree prefixes the run needs; pos must be aligned to the chunk.
    """
    n = len(rows)
    idxs = list(map(_FIRST, rows))
    leaves: list[bytes | None] = list(map(_SECOND, rows))
    stored: list[bytes] = list(map(_THIRD, rows))
    problem: Problem | None = None
    good = n
    # 1. indexes contiguous from pos
    if n and (idxs[0] != pos or idxs[-1] != pos + n - 1):
        good, problem = _first_gap(pos, idxs)
        del leaves[good:], stored[good:]
    # 2. leaf hashes (erased payloads: the stored hash only)
    # Any falsy leaf (None: erased; b"": empty) takes the row-by-row path below.
    erased = not all(leaves)
    if erased:
        computed = [bytes(h) if leaf is None else _sha256(_LEAF + leaf).digest()
                    for leaf, h in zip(leaves, stored, strict=True)]
    else:
        computed = [_sha256(_LEAF + leaf).digest() for leaf in leaves]  # type: ignore[operator]
    if computed != stored:
        good = next(i for i, (a, b) in enumerate(zip(computed, stored, strict=True)) if a != b)
        del computed[good:]
        problem = Problem(ProblemKind.EDITED, pos + good,
                          f"entry {pos + good}'s bytes do not hash to its stored leaf hash")
    # 3. canonical JSON of the payloads; retention events
    if erased:
        where = [i for i, leaf in enumerate(leaves[:good]) if leaf is not None]
        present: list[bytes] = [leaves[i] for i in where]  # type: ignore[misc]
    else:
        where = None
        present = leaves[:good]  # type: ignore[assignment]
    retention: list[tuple[int, int]] = []
    if present:
        if RETENTION_MARK in b"\n".join(present):
            retention = retention_ranges(present)
        bad_json = first_noncanonical(present) if check_json else None
        if bad_json is not None:
            offset = bad_json[0] if where is None else where[bad_json[0]]
            good = offset
            del computed[good:]
            problem = Problem(ProblemKind.MALFORMED, pos + offset,
                              f"entry {pos + offset} is not canonical JSON: {bad_json[1]}")
    redacted = tuple(pos + i for i, leaf in enumerate(leaves[:good]) if leaf is None) \
        if erased else ()
    # 4. the subtrees the run folds in and compares with the stored nodes
    levels = merkle.subtree_levels(computed)
    prefixes = {size: _blocks(levels, size - pos) for size in {*sizes, pos + good}
                if pos < size <= pos + good}
    prefixes.setdefault(pos + good, ())
    return ChunkResult(pos=pos, rows=n, good=good, problem=problem, redacted=redacted,
                       retention=tuple(retention),
                       upper=tuple(tuple(level) for level in levels[NODE_CHECK_LEVEL:]),
                       prefixes=prefixes)


def _blocks(levels: list[list[bytes]], length: int) -> tuple[tuple[int, bytes], ...]:
    return tuple((ref.level, levels[ref.level][ref.index])
                 for ref in merkle.subtree_refs(0, length))


def _first_gap(pos: int, idxs: Sequence[int]) -> tuple[int, Problem]:
    for i, idx in enumerate(idxs):
        if idx > pos + i:
            return i, Problem(ProblemKind.MISSING, pos + i,
                              f"entry {pos + i} is missing (the next stored entry is {idx})")
        if idx < pos + i:
            return i, Problem(ProblemKind.INSERTED, pos + i,
                              f"an extra entry with index {idx} is stored before entry {pos + i}")
    raise AssertionError("no gap")  # pragma: no cover - callers check first


def retention_ranges(leaves: Sequence[bytes]) -> list[tuple[int, int]]:
    """(from_index, to_index) of every retention.redacted event among the leaves."""
    found = []
    for leaf in leaves:
        if RETENTION_MARK in leaf:
            try:
                doc = json.loads(leaf)
                if doc.get("type") == "retention.redacted":
                    found.append((int(doc["from_index"]), int(doc["to_index"])))
            except (ValueError, KeyError, TypeError):
                continue
    return found
