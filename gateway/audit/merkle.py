"""RFC 9162 Merkle tree hashing, proof planning and proof verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

from provisioning.errors import DomainError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ConsistencyProofError",
    "InclusionProofError",
    "MemoryTree",
    "MerkleError",
    "MerkleFrontier",
    "NodeRef",
    "ProofPlan",
    "consistency_plan",
    "frontier_refs",
    "hash_range",
    "inclusion_plan",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "root_plan",
    "subtree_levels",
    "subtree_refs",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# Domain separation prefixes from RFC 9162 section 2.1.1: they keep a leaf from
# ever being reinterpreted as an interior node (second-preimage resistance).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

_sha256 = hashlib.sha256


class MerkleError(DomainError):
    """Invalid argument or inconsistent node data for a Merkle tree operation."""

    status = 500
    code = "merkle-error"
    title = "Audit log proof failed"


class InclusionProofError(MerkleError):
    """An inclusion proof does not prove the leaf is in the tree with the given root."""


class ConsistencyProofError(MerkleError):
    """A consistency proof does not prove the new tree extends the old one."""


def leaf_hash(leaf: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || leaf)."""
    return _sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2), the RFC's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str, error: type[MerkleError]) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise error(f"{what} must be {HASH_SIZE} bytes of SHA-256 output, got {got}")


def _check_count(value: int, what: str, error: type[MerkleError]) -> None:
    # bool is an int subclass; a True/False "size" is always a caller bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{what} must be an int, got {type(value).__name__}")
    if value < 0:
        raise error(f"{what} must not be negative, got {value}")


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Compute MTH over the given leaf hashes directly from the RFC 9162 definition.

    This is the reference implementation (O(n) hashing, no stored nodes); use it in
    tests and for small trees only.
    """

    def mth(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return hashes[lo]
        k = _split(n)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    if not hashes:
        return EMPTY_ROOT
    for i, h in enumerate(hashes):
        _check_hash(h, f"leaf hash {i}", MerkleError)
    return mth(0, len(hashes))


def subtree_levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every complete aligned subtree over these leaf hashes, by level.

    ``levels[l][j]`` is the MTH of leaves [j * 2**l, (j + 1) * 2**l); level 0 is the
    leaf hashes themselves, and a level holds only complete blocks. Hashing a block of
    leaves at once this way costs one list comprehension per level.
    """
    levels = [list(leaf_hashes)]
    current = levels[0]
    sha, prefix = _sha256, _NODE_PREFIX
    while len(current) > 1:
        current = [sha(prefix + a + b).digest()
                   for a, b in zip(current[::2], current[1::2], strict=False)]
        levels.append(current)
    return levels


@dataclass(frozen=True, slots=True, order=True, init=False)
class NodeRef:
    """A complete, aligned subtree: MTH of leaves [index * 2**level, (index + 1) * 2**level).

    Level 0 nodes are leaf hashes. This is the storage layer's primary key.
    """

    level: int
    index: int

    def __init__(self, level: int, index: int) -> None:
        # The generated frozen __init__ goes through object.__setattr__ per field;
        # writing the slots directly halves the cost, which matters because
        # MerkleFrontier.append creates one NodeRef per completed node.
        _set_level(self, level)
        _set_index(self, index)

    @property
    def start(self) -> int:
        """First leaf index covered by this node."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf index covered by this node."""
        return (self.index + 1) << self.level


_set_level = NodeRef.__dict__["level"].__set__
_set_index = NodeRef.__dict__["index"].__set__


def subtree_refs(start: int, end: int) -> list[NodeRef]:
    """Decompose the RFC 9162 subtree [start, end) into maximal complete aligned subtrees.

    Every range an RFC 9162 proof or tree head refers to has ``start`` aligned to the
    smallest power of two >= its length, so its decomposition is the binary expansion
    of the length, largest subtree first (left to right). Other ranges have no RFC 9162
    MTH and are rejected. An empty range decomposes to no nodes.
    """
    _check_count(start, "range start", MerkleError)
    _check_count(end, "range end", MerkleError)
    if end < start:
        raise MerkleError(f"range [{start}, {end}) is reversed: end must be >= start")
    n = end - start
    if n == 0:
        return []
    capacity = 1 << (n - 1).bit_length()
    if n == capacity and not start % n:
        # Fast path: one complete subtree (most proof elements are).
        level = n.bit_length() - 1
        return [NodeRef(level, start >> level)]
    if start % capacity:
        raise MerkleError(
            f"range [{start}, {end}) is not a subtree of an RFC 9162 tree: its start must be "
            f"a multiple of {capacity}, the smallest power of two >= its length {n}"
        )
    refs: list[NodeRef] = []
    pos = start
    for level in range(n.bit_length() - 1, -1, -1):
        if (n >> level) & 1:
            refs.append(NodeRef(level, pos >> level))
            pos += 1 << level
    return refs


def frontier_refs(size: int) -> list[NodeRef]:
    """The nodes a MerkleFrontier of ``size`` leaves holds (its right edge), left to right."""
    return subtree_refs(0, size)


def _fetch(nodes: Mapping[NodeRef, bytes], ref: NodeRef) -> bytes:
    try:
        value = nodes[ref]
    except KeyError:
        raise MerkleError(
            f"node level={ref.level} index={ref.index} (leaves [{ref.start}, {ref.end})) "
            "was not supplied; fetch every ref in plan.refs()"
        ) from None
    if type(value) is not bytes or len(value) != HASH_SIZE:
        _check_hash(value, f"node level={ref.level} index={ref.index}", MerkleError)
    return value


def hash_range(refs: Sequence[NodeRef], nodes: Mapping[NodeRef, bytes]) -> bytes:
    """Fold the output of subtree_refs() into the RFC 9162 MTH of that range.

    MTH(D[n]) = HASH(MTH(D[0:k]) || MTH(D[k:n])) with k the largest power of two < n,
    and the refs are exactly the binary expansion of n, so folding right to left,
    ``acc = node_hash(ref_hash, acc)``, reproduces the recursion. An empty ``refs``
    is the empty tree.
    """
    if not refs:
        return EMPTY_ROOT
    # Shape check equivalent to refs == subtree_refs(start, end): contiguous,
    # strictly decreasing levels, and a start aligned to twice the first subtree
    # (the smallest power of two >= the range length when there are >= 2 refs).
    prev = refs[0]
    well_formed = prev.level >= 0 and prev.index >= 0 and (len(refs) == 1 or not prev.index & 1)
    if well_formed:
        for ref in refs[1:]:
            if not 0 <= ref.level < prev.level or ref.start != prev.end:
                well_formed = False
                break
            prev = ref
    if not well_formed:
        raise MerkleError(
            "refs must be exactly subtree_refs(start, end) of one RFC 9162 range, "
            f"got {list(refs)!r}"
        )
    acc = _fetch(nodes, refs[-1])
    for ref in reversed(refs[:-1]):
        acc = node_hash(_fetch(nodes, ref), acc)
    return acc


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which stored nodes make up each proof element, in RFC 9162 proof order.

    ``elements[i]`` is the subtree_refs() decomposition of the range whose MTH is
    proof element ``i``. Fetch ``refs()`` in one storage query, then ``assemble()``.
    """

    elements: tuple[tuple[NodeRef, ...], ...]

    def __len__(self) -> int:
        return len(self.elements)

    def refs(self) -> frozenset[NodeRef]:
        """Every node needed to assemble the proof (O(log n) of them)."""
        return frozenset(ref for element in self.elements for ref in element)

    def leaf_indices(self) -> frozenset[int]:
        """Indices of the level-0 refs, for storage that keeps leaf hashes apart."""
        return frozenset(ref.index for ref in self.refs() if ref.level == 0)

    def interior_refs(self) -> frozenset[NodeRef]:
        """The level >= 1 refs, for storage that keeps leaf hashes apart."""
        return frozenset(ref for ref in self.refs() if ref.level > 0)

    def assemble(self, nodes: Mapping[NodeRef, bytes]) -> list[bytes]:
        """Build the proof (list of 32-byte hashes) from the fetched nodes."""
        return [hash_range(element, nodes) for element in self.elements]


def _plan(ranges: Iterable[tuple[int, int]]) -> ProofPlan:
    return ProofPlan(tuple(tuple(subtree_refs(lo, hi)) for lo, hi in ranges))


def root_plan(size: int) -> ProofPlan:
    """Plan for the tree head at ``size``: one element, the root hash (EMPTY_ROOT for 0)."""
    _check_count(size, "tree size", MerkleError)
    return _plan([(0, size)])


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """Plan for the RFC 9162 section 2.1.3.1 inclusion proof PATH(index, D[0:size])."""
    _check_count(index, "leaf index", MerkleError)
    _check_count(size, "tree size", MerkleError)
    if index >= size:
        raise MerkleError(
            f"leaf index {index} is not in a tree of size {size}: index must be < size"
        )
    # Walk the RFC recursion top-down; it emits the sibling of each step after the
    # sub-path, so the proof is the siblings in reverse (leaf-to-root) order.
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            siblings.append((mid, hi))
            hi = mid
        else:
            siblings.append((lo, mid))
            lo = mid
    siblings.reverse()
    return _plan(siblings)


def consistency_plan(old_size: int, new_size: int) -> ProofPlan:
    """Plan for the RFC 9162 section 2.1.4.1 consistency proof PROOF(old_size, D[0:new_size])."""
    _check_count(old_size, "old tree size", MerkleError)
    _check_count(new_size, "new tree size", MerkleError)
    if not 0 < old_size <= new_size:
        raise MerkleError(
            f"no consistency proof from size {old_size} to {new_size}: "
            "need 0 < old_size <= new_size"
        )
    # Iterative SUBPROOF(m, D[n], b): each step emits the sibling range after the
    # sub-proof; when the recursion bottoms out with b == false, the sub-tree equal to
    # the old tree's right part is emitted first.
    outer: list[tuple[int, int]] = []
    lo, hi = 0, new_size
    have_root = True
    while old_size != hi:
        mid = lo + _split(hi - lo)
        if old_size <= mid:
            outer.append((mid, hi))
            hi = mid
        else:
            outer.append((lo, mid))
            lo = mid
            have_root = False
    ranges = [] if have_root else [(lo, hi)]
    ranges.extend(reversed(outer))
    return _plan(ranges)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify an inclusion proof (RFC 9162 section 2.1.3.2); raise InclusionProofError."""
    _check_count(index, "leaf index", InclusionProofError)
    _check_count(size, "tree size", InclusionProofError)
    _check_hash(leaf_hash, "leaf hash", InclusionProofError)
    _check_hash(root, "root hash", InclusionProofError)
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof element {i}", InclusionProofError)
    if index >= size:
        raise InclusionProofError(f"leaf index {index} is not in a tree of size {size}")

    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise InclusionProofError(
                f"inclusion proof for index {index} in size {size} has too many elements"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError(
            f"inclusion proof for index {index} in size {size} has too few elements"
        )
    if r != root:
        raise InclusionProofError(
            f"inclusion proof for index {index} in size {size} does not lead to the given root"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify a consistency proof (RFC 9162 section 2.1.4.2); raise ConsistencyProofError.

    ``old_size == new_size`` needs an empty proof and equal roots. ``old_size == 0``
    needs an empty proof and ``old_root == EMPTY_ROOT`` (anything else is not the
    root of an empty tree); the new tree is then trivially consistent.
    """
    err = ConsistencyProofError
    _check_count(old_size, "old tree size", err)
    _check_count(new_size, "new tree size", err)
    _check_hash(old_root, "old root hash", err)
    _check_hash(new_root, "new root hash", err)
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof element {i}", err)
    if old_size > new_size:
        raise err(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == 0:
        if proof:
            raise err("consistency proof from an empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise err("old root is not the empty-tree hash although old tree size is 0")
        if new_size == 0 and new_root != EMPTY_ROOT:
            raise err("new root is not the empty-tree hash although new tree size is 0")
        return
    if old_size == new_size:
        if proof:
            raise err("consistency proof between equal tree sizes must be empty")
        if old_root != new_root:
            raise err(f"roots differ although both trees have size {old_size}")
        return
    if not proof:
        raise err(f"consistency proof from size {old_size} to {new_size} is empty")

    path = list(proof)
    # A power-of-two old tree is itself a subtree of the new one, so the RFC omits
    # its root from the proof and the verifier seeds the fold with it.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise err(f"consistency proof from size {old_size} to {new_size} has too many elements")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise err(f"consistency proof from size {old_size} to {new_size} has too few elements")
    if fr != old_root:
        raise err(f"consistency proof does not match the old root at size {old_size}")
    if sr != new_root:
        raise err(f"consistency proof does not match the new root at size {new_size}")


class MerkleFrontier:
    """Compact range [0, size): the complete subtrees on the tree's right edge.

    ``hashes`` are ordered like frontier_refs(size): largest (leftmost) subtree first.
    Appending is amortised O(1) hashing and reports every node it completes so the
    storage layer can persist it alongside the leaf hash.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_count(size, "tree size", MerkleError)
        expected = size.bit_count()
        if len(hashes) != expected:
            raise MerkleError(
                f"a frontier of size {size} holds {expected} hashes "
                f"(one per set bit of the size), got {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            _check_hash(h, f"frontier hash {i}", MerkleError)
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def from_nodes(cls, size: int, nodes: Mapping[NodeRef, bytes]) -> MerkleFrontier:
        """Rebuild from stored nodes; fetch exactly ``frontier_refs(size)``."""
        return cls(size, [_fetch(nodes, ref) for ref in frontier_refs(size)])

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The right-edge subtree hashes, in frontier_refs(size) order."""
        return tuple(self._hashes)

    def refs(self) -> list[NodeRef]:
        """The NodeRefs of ``hashes``, i.e. frontier_refs(size)."""
        return frontier_refs(self._size)

    def copy(self) -> MerkleFrontier:
        """An independent frontier with the same state (to stage appends)."""
        clone = MerkleFrontier.__new__(MerkleFrontier)
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone

    def append(self, leaf_hash: bytes) -> list[tuple[NodeRef, bytes]]:
        """Add one leaf hash; return the nodes (level >= 1) this completes, lowest first.

        The leaf itself is node (0, old size); it is not repeated in the result.
        """
        if type(leaf_hash) is not bytes or len(leaf_hash) != HASH_SIZE:
            _check_hash(leaf_hash, "leaf hash", MerkleError)
        hashes = self._hashes
        index = self._size
        self._size = index + 1
        if not index & 1:
            # Even index: the leaf is a left child, nothing completes (half of all calls).
            hashes.append(leaf_hash)
            return []
        completed: list[tuple[NodeRef, bytes]] = []
        h = leaf_hash
        level = 0
        # Binary-counter carry: every set low bit of the old size is a left sibling
        # waiting on the right edge; each merge completes one aligned subtree.
        while index & 1:
            h = _sha256(_NODE_PREFIX + hashes.pop() + h).digest()
            level += 1
            index >>= 1
            completed.append((NodeRef(level, index), h))
        hashes.append(h)
        return completed

    def append_subtree(self, level: int, subtree_hash: bytes) -> list[tuple[NodeRef, bytes]]:
        """Add a complete subtree of 2**level leaves at once (its MTH); return the nodes
        this completes above it, lowest first. ``append`` is the level-0 case.

        The size must be a multiple of 2**level, so the subtree is aligned.
        """
        _check_count(level, "subtree level", MerkleError)
        if type(subtree_hash) is not bytes or len(subtree_hash) != HASH_SIZE:
            _check_hash(subtree_hash, "subtree hash", MerkleError)
        if self._size % (1 << level):
            raise MerkleError(
                f"a subtree of 2**{level} leaves cannot follow {self._size} leaves: "
                f"the size must be a multiple of {1 << level}"
            )
        hashes = self._hashes
        index = self._size >> level
        self._size += 1 << level
        completed: list[tuple[NodeRef, bytes]] = []
        h = subtree_hash
        while index & 1:
            h = _sha256(_NODE_PREFIX + hashes.pop() + h).digest()
            level += 1
            index >>= 1
            completed.append((NodeRef(level, index), h))
        hashes.append(h)
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[tuple[NodeRef, bytes]]:
        """Append several leaf hashes; return all completed nodes in creation order."""
        completed: list[tuple[NodeRef, bytes]] = []
        for h in leaf_hashes:
            completed.extend(self.append(h))
        return completed

    def extend_levels(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Append a batch of leaf hashes; return the (level, index, hash) of every node
        (level >= 1) it completes, level by level (lowest first, left to right).

        The same nodes and frontier as ``extend``, but each level is hashed in one list
        comprehension over the batch instead of a carry loop per leaf.
        """
        if not (set(map(type, leaf_hashes)) <= {bytes}
                and set(map(len, leaf_hashes)) <= {HASH_SIZE}):  # checked in C; else name it
            for i, h in enumerate(leaf_hashes):
                _check_hash(h, f"leaf hash {i}", MerkleError)
        size = self._size
        # The frontier by level: bit b of the size holds a complete subtree at level b.
        old = dict(zip(reversed([b for b in range(size.bit_length()) if size >> b & 1]),
                       self._hashes, strict=True))
        new: dict[int, bytes] = {}
        completed: list[tuple[int, int, bytes]] = []
        sha, prefix = _sha256, _NODE_PREFIX
        row, first, level = list(leaf_hashes), size, 0
        while row:
            if first & 1:  # a left sibling waits on the right edge at this level
                row.insert(0, old.pop(level))
                first -= 1
            if len(row) & 1:  # the last one waits for a right sibling
                new[level] = row.pop()
            row = [sha(prefix + a + b).digest()
                   for a, b in zip(row[::2], row[1::2], strict=True)]
            first >>= 1
            level += 1
            completed.extend(zip(repeat(level), range(first, first + len(row)), row))
        new.update(old)  # levels the batch did not reach keep their subtrees
        self._size = size + len(leaf_hashes)
        self._hashes = [new[b] for b in sorted(new, reverse=True)]
        return completed

    def root(self) -> bytes:
        """MTH of the tree of ``size`` leaves (EMPTY_ROOT when empty)."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        acc = hashes[-1]
        for h in reversed(hashes[:-1]):
            acc = _sha256(_NODE_PREFIX + h + acc).digest()
        return acc


class _LevelNodes(Mapping[NodeRef, bytes]):
    """Read-only NodeRef -> hash view over per-level lists (MemoryTree's storage)."""

    __slots__ = ("_levels",)

    def __init__(self, levels: list[list[bytes]]) -> None:
        self._levels = levels

    def __getitem__(self, ref: NodeRef) -> bytes:
        if 0 <= ref.level < len(self._levels) and 0 <= ref.index < len(self._levels[ref.level]):
            return self._levels[ref.level][ref.index]
        raise KeyError(ref)

    def __iter__(self) -> Iterator[NodeRef]:
        for level, row in enumerate(self._levels):
            for index in range(len(row)):
                yield NodeRef(level, index)

    def __len__(self) -> int:
        return sum(len(row) for row in self._levels)


class MemoryTree:
    """In-memory append-only tree storing every complete subtree, like the real storage."""

    __slots__ = ("_frontier", "_levels", "_nodes")

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._frontier = MerkleFrontier()
        self._nodes = _LevelNodes(self._levels)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._frontier.size

    @property
    def nodes(self) -> Mapping[NodeRef, bytes]:
        """Every stored node, keyed by NodeRef (live view)."""
        return self._nodes

    def append(self, leaf: bytes) -> int:
        """Hash and append a leaf; return its index."""
        return self.append_hash(leaf_hash(leaf))

    def append_hash(self, leaf_hash: bytes) -> int:
        """Append an already computed leaf hash; return its index."""
        index = self._frontier.size
        completed = self._frontier.append(leaf_hash)
        levels = self._levels
        levels[0].append(leaf_hash)
        for ref, h in completed:
            if ref.level == len(levels):
                levels.append([])
            levels[ref.level].append(h)
        return index

    def _size_arg(self, size: int | None) -> int:
        if size is None:
            return self.size
        _check_count(size, "tree size", MerkleError)
        if size > self.size:
            raise MerkleError(f"tree size {size} is beyond the current size {self.size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """Root hash at ``size`` (default: current size)."""
        if size is None:
            return self._frontier.root()
        return root_plan(self._size_arg(size)).assemble(self._nodes)[0]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof for leaf ``index`` in the tree of ``size`` leaves."""
        return inclusion_plan(index, self._size_arg(size)).assemble(self._nodes)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof from ``old_size`` to ``new_size`` (default: current size)."""
        return consistency_plan(old_size, self._size_arg(new_size)).assemble(self._nodes)
