"""Exhaustive and property-based checks of gateway.audit.merkle against RFC 9162 references."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.merkle import (
    ConsistencyProofError,
    InclusionProofError,
    MemoryTree,
    MerkleError,
    MerkleFrontier,
    NodeRef,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    subtree_levels,
    verify_consistency,
    verify_inclusion,
)

MAX_INCLUSION_SIZE = 300
MAX_CONSISTENCY_SIZE = 150
MAX_REFERENCE_SIZE = 64  # sizes whose proofs are also compared with the O(n) reference
MAX_MUTATION_SIZE = 16  # sizes whose proofs get every byte flipped
MAX_WRONG_ARGS_SIZE = 16  # sizes whose proofs are tried with every other index/size

LEAVES = [i.to_bytes(4, "big") + b"leaf" for i in range(MAX_INCLUSION_SIZE)]
HASHES = [leaf_hash(x) for x in LEAVES]


# --- RFC 9162 section 2.1 definitions, transcribed as literally as possible --------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    return root_from_leaf_hashes(d)


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    t = MemoryTree()
    for h in HASHES:
        t.append_hash(h)
    return t


@pytest.fixture(scope="module")
def roots() -> list[bytes]:
    return [ref_mth(HASHES[:n]) for n in range(MAX_INCLUSION_SIZE + 1)]


def _flip(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :]


# A verifier only sees 32-byte hashes, never how many leaves a sibling covers, so
# a proof for (index, size) also verifies for any other (index', size') whose proof
# has the same length and the same left/right order: e.g. the proof [h1, h2] for
# leaf 0 of a 3-leaf tree is also a valid proof for leaf 0 of a 4-leaf tree whose
# right half hashes to h2. That is why tree sizes must come from signed
# checkpoints. The "shape" below captures exactly what the verifier depends on;
# the tests require a wrong index/size to fail unless its shape is identical.
@functools.cache
def inclusion_shape(index: int, size: int) -> tuple[bool, ...] | None:
    if not 0 <= index < size:
        return None
    return tuple(element[0].start < index for element in inclusion_plan(index, size).elements)


@functools.cache
def consistency_shape(old: int, new: int) -> tuple[bool, tuple[bool, ...]]:
    seeded_by_old_root = old & (old - 1) == 0
    plan = consistency_plan(old, new)
    return seeded_by_old_root, tuple(element[-1].end <= old for element in plan.elements)


# --- roots and the frontier -------------------------------------------------------------


def test_roots_at_every_size(tree: MemoryTree, roots: list[bytes]) -> None:
    for size in range(MAX_INCLUSION_SIZE + 1):
        assert tree.root(size) == roots[size]


def test_frontier_matches_reference_and_emits_every_subtree(roots: list[bytes]) -> None:
    frontier = MerkleFrontier()
    emitted: dict[NodeRef, bytes] = {}
    for size, h in enumerate(HASHES, start=1):
        new = frontier.append(h)
        for ref, value in new:
            assert ref.level >= 1
            assert ref.end == size, "a node completes exactly when its last leaf arrives"
            assert ref not in emitted
            assert value == ref_mth(HASHES[ref.start : ref.end])
            emitted[ref] = value
        assert frontier.size == size
        assert frontier.root() == roots[size]
        # Exactly the complete aligned subtrees of level >= 1 have been emitted.
        assert len(emitted) == size - size.bit_count()


def test_frontier_restore_at_every_size(tree: MemoryTree, roots: list[bytes]) -> None:
    for size in range(0, MAX_INCLUSION_SIZE + 1, 7):
        f = MerkleFrontier.from_nodes(size, tree.nodes)
        assert f.root() == roots[size]
        rebuilt = MerkleFrontier(size, f.hashes)
        for h in HASHES[size : size + 40]:
            assert rebuilt.append(h) == f.append(h)
        assert f.root() == roots[min(size + 40, MAX_INCLUSION_SIZE)]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=600), st.data())
def test_frontier_random_leaves(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    split = data.draw(st.integers(0, len(hashes)))
    head = MerkleFrontier()
    head.extend(hashes[:split])
    resumed = MerkleFrontier(split, head.hashes)
    resumed.extend(hashes[split:])
    assert resumed.root() == root_from_leaf_hashes(hashes)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.lists(st.integers(0, 70), max_size=6))
def test_extend_levels_equals_appending_one_by_one(start: int, batches: list[int]) -> None:
    """Batches hashed level by level complete the same nodes and leave the same frontier
    as appending their leaves one at a time, from any starting size."""
    one_by_one, batched = MerkleFrontier(), MerkleFrontier()
    one_by_one.extend(HASHES[:start])
    batched.extend(HASHES[:start])
    size = start
    for n in batches:
        block = [leaf_hash(i.to_bytes(4, "big")) for i in range(size, size + n)]
        expected = sorted((ref.level, ref.index, h) for ref, h in one_by_one.extend(block))
        got = batched.extend_levels(block)
        assert got == sorted(got) and got == expected
        size += n
        assert batched.size == one_by_one.size == size
        assert batched.hashes == one_by_one.hashes and batched.root() == one_by_one.root()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40))
def test_appending_whole_subtrees_equals_appending_their_leaves(levels: list[int]) -> None:
    """Blocks appended at any aligned level: same nodes completed, same root, and
    subtree_levels gives each block's hash."""
    by_leaf, by_block = MerkleFrontier(), MerkleFrontier()
    size = 0
    for level in levels:
        level = min(level, (size & -size).bit_length() - 1) if size else level
        block = HASHES[size % 64 : size % 64 + (1 << level)]
        block += HASHES[: (1 << level) - len(block)]
        levels_of_block = subtree_levels(block)
        assert levels_of_block[level] == [ref_mth(block)]
        assert all(len(row) == len(block) >> i for i, row in enumerate(levels_of_block))
        leafwise = by_leaf.extend(block)
        blockwise = by_block.append_subtree(level, levels_of_block[level][0])
        assert blockwise == [(ref, h) for ref, h in leafwise if ref.level > level]
        size += 1 << level
        assert by_block.size == size and by_block.root() == by_leaf.root()
    with pytest.raises(MerkleError, match="multiple of 4"):
        MerkleFrontier(1, [HASHES[0]]).append_subtree(2, HASHES[1])


# --- inclusion ------------------------------------------------------------------------


def test_inclusion_every_index_every_size(tree: MemoryTree, roots: list[bytes]) -> None:
    nodes = tree.nodes
    for size in range(1, MAX_INCLUSION_SIZE + 1):
        root = roots[size]
        for index in range(size):
            proof = inclusion_plan(index, size).assemble(nodes)
            verify_inclusion(HASHES[index], index, size, proof, root)


def test_inclusion_matches_rfc_reference(tree: MemoryTree) -> None:
    for size in range(1, MAX_REFERENCE_SIZE + 1):
        for index in range(size):
            assert tree.inclusion_proof(index, size) == ref_path(index, HASHES[:size])


def test_inclusion_mutations_fail(tree: MemoryTree, roots: list[bytes]) -> None:
    for size in range(1, MAX_MUTATION_SIZE + 1):
        root = roots[size]
        for index in range(size):
            lh = HASHES[index]
            proof = tree.inclusion_proof(index, size)
            for i, element in enumerate(proof):
                for pos in range(32):
                    bad = list(proof)
                    bad[i] = _flip(element, pos)
                    with pytest.raises(InclusionProofError):
                        verify_inclusion(lh, index, size, bad, root)
            for pos in range(32):
                with pytest.raises(InclusionProofError):
                    verify_inclusion(_flip(lh, pos), index, size, proof, root)
                with pytest.raises(InclusionProofError):
                    verify_inclusion(lh, index, size, proof, _flip(root, pos))


def test_inclusion_wrong_index_or_size_fails(tree: MemoryTree, roots: list[bytes]) -> None:
    for size in range(1, MAX_WRONG_ARGS_SIZE + 1):
        root = roots[size]
        for index in range(size):
            lh = HASHES[index]
            proof = tree.inclusion_proof(index, size)
            shape = inclusion_shape(index, size)
            accepted = 0
            for other_size in range(1, MAX_WRONG_ARGS_SIZE + 5):
                for other in range(other_size + 1):
                    if (other, other_size) == (index, size):
                        continue
                    if inclusion_shape(other, other_size) == shape:
                        verify_inclusion(lh, other, other_size, proof, root)
                        accepted += 1
                    else:
                        with pytest.raises(InclusionProofError):
                            verify_inclusion(lh, other, other_size, proof, root)
            # A wrong index alone (same size) never shares the shape.
            assert all(
                inclusion_shape(other, size) != shape for other in range(size) if other != index
            )
            assert accepted < MAX_WRONG_ARGS_SIZE


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_inclusion_random_mutation(
    data: st.DataObject,
) -> None:
    size = data.draw(st.integers(2, MAX_INCLUSION_SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    tree = _shared_tree()
    root = tree.root(size)
    proof = tree.inclusion_proof(index, size)
    verify_inclusion(HASHES[index], index, size, proof, root)
    which = data.draw(st.integers(0, len(proof) - 1), label="element")
    pos = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    bad = list(proof)
    bad[which] = _flip(bad[which], pos, mask)
    with pytest.raises(InclusionProofError):
        verify_inclusion(HASHES[index], index, size, bad, root)
    wrong_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    with pytest.raises(InclusionProofError):
        verify_inclusion(HASHES[index], wrong_index, size, proof, root)


_TREE_CACHE: list[MemoryTree] = []


def _shared_tree() -> MemoryTree:
    # Hypothesis tests cannot take function-scoped fixtures; build the tree once.
    if not _TREE_CACHE:
        t = MemoryTree()
        for h in HASHES:
            t.append_hash(h)
        _TREE_CACHE.append(t)
    return _TREE_CACHE[0]


# --- consistency ------------------------------------------------------------------------


def test_consistency_every_pair(tree: MemoryTree, roots: list[bytes]) -> None:
    nodes = tree.nodes
    for new in range(1, MAX_CONSISTENCY_SIZE + 1):
        new_root = roots[new]
        for old in range(1, new + 1):
            proof = consistency_plan(old, new).assemble(nodes)
            verify_consistency(old, new, roots[old], new_root, proof)
        verify_consistency(0, new, roots[0], new_root, [])


def test_consistency_matches_rfc_reference(tree: MemoryTree) -> None:
    for new in range(1, MAX_REFERENCE_SIZE + 1):
        for old in range(1, new + 1):
            assert tree.consistency_proof(old, new) == ref_proof(old, HASHES[:new])


def test_consistency_mutations_fail(tree: MemoryTree, roots: list[bytes]) -> None:
    for new in range(2, MAX_MUTATION_SIZE + 1):
        for old in range(1, new):
            r1, r2 = roots[old], roots[new]
            proof = tree.consistency_proof(old, new)
            for i, element in enumerate(proof):
                for pos in range(32):
                    bad = list(proof)
                    bad[i] = _flip(element, pos)
                    with pytest.raises(ConsistencyProofError):
                        verify_consistency(old, new, r1, r2, bad)
            for pos in range(32):
                with pytest.raises(ConsistencyProofError):
                    verify_consistency(old, new, _flip(r1, pos), r2, proof)
                with pytest.raises(ConsistencyProofError):
                    verify_consistency(old, new, r1, _flip(r2, pos), proof)
            if len(proof) > 1:
                with pytest.raises(ConsistencyProofError):
                    verify_consistency(old, new, r1, r2, proof[:-1])
                with pytest.raises(ConsistencyProofError):
                    verify_consistency(old, new, r1, r2, [*proof, proof[0]])


def test_consistency_wrong_sizes_fail(tree: MemoryTree, roots: list[bytes]) -> None:
    for new in range(2, MAX_WRONG_ARGS_SIZE + 1):
        for old in range(1, new):
            r1, r2 = roots[old], roots[new]
            proof = tree.consistency_proof(old, new)
            shape = consistency_shape(old, new)
            for other_new in range(2, MAX_WRONG_ARGS_SIZE + 5):
                for other_old in range(1, other_new):
                    if (other_old, other_new) == (old, new):
                        continue
                    if consistency_shape(other_old, other_new) == shape:
                        verify_consistency(other_old, other_new, r1, r2, proof)
                    else:
                        with pytest.raises(ConsistencyProofError):
                            verify_consistency(other_old, other_new, r1, r2, proof)
            # A wrong old size alone (same new size) never shares the shape.
            assert all(
                consistency_shape(other, new) != shape for other in range(1, new) if other != old
            )


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_consistency_random_mutation(data: st.DataObject) -> None:
    new = data.draw(st.integers(2, MAX_INCLUSION_SIZE), label="new")
    old = data.draw(st.integers(1, new - 1), label="old")
    tree = _shared_tree()
    r1, r2 = tree.root(old), tree.root(new)
    proof = tree.consistency_proof(old, new)
    verify_consistency(old, new, r1, r2, proof)
    which = data.draw(st.integers(0, len(proof) - 1), label="element")
    pos = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    bad = list(proof)
    bad[which] = _flip(bad[which], pos, mask)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(old, new, r1, r2, bad)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2**40), st.data())
def test_plans_are_logarithmic_and_well_formed(size: int, data: st.DataObject) -> None:
    # Big sizes: only the plan shape is checked (no hashing), against RFC facts:
    # every element folds to a valid RFC subtree, and refs stay O(log n).
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    log = size.bit_length()
    inc = inclusion_plan(index, size)
    con = consistency_plan(old, size)
    assert len(inc) <= log
    assert len(inc.refs()) <= 2 * log
    assert len(con.refs()) <= 3 * log
    for plan in (inc, con):
        for element in plan.elements:
            assert element
            assert all(ref.end <= size for ref in element)
            levels = [ref.level for ref in element]
            assert levels == sorted(set(levels), reverse=True)


def test_node_hash_fold_is_what_verifiers_recompute() -> None:
    # Tie the plan fold order to MTH on a non-power-of-two range: [0, 7).
    t = _shared_tree()
    h = HASHES
    expected = node_hash(
        node_hash(node_hash(h[0], h[1]), node_hash(h[2], h[3])),
        node_hash(node_hash(h[4], h[5]), h[6]),
    )
    assert t.root(7) == expected
