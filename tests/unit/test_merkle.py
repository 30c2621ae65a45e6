"""Known-answer and edge-case tests for gateway.audit.merkle."""

from __future__ import annotations

import hashlib

import pytest

from gateway.audit.merkle import (
    EMPTY_ROOT,
    ConsistencyProofError,
    InclusionProofError,
    MemoryTree,
    MerkleError,
    MerkleFrontier,
    NodeRef,
    ProofPlan,
    consistency_plan,
    frontier_refs,
    hash_range,
    inclusion_plan,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    root_plan,
    subtree_refs,
    verify_consistency,
    verify_inclusion,
)

# Vectors from google/certificate-transparency cpp/merkletree/merkle_tree_test.cc
# and transparency-dev/merkle proof/verify_test.go (RFC 6962 hashing).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
EMPTY_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


# (0-based leaf index, tree size, proof); the upstream table is 1-based.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    t = MemoryTree()
    for leaf in LEAVES:
        t.append(leaf)
    return t


# --- hashing -----------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == EMPTY_HEX
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MemoryTree().root() == EMPTY_ROOT
    assert MerkleFrontier().root() == EMPTY_ROOT
    assert root_plan(0).assemble({}) == [EMPTY_ROOT]


def test_leaf_and_node_hash_domain_separation() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    # The CT test data leaf "" hashes to the size-1 root.
    assert leaf_hash(b"") == ROOTS[0]


@pytest.mark.parametrize("size", range(1, 9))
def test_known_roots(size: int, tree: MemoryTree) -> None:
    hashes = [leaf_hash(x) for x in LEAVES[:size]]
    assert root_from_leaf_hashes(hashes) == ROOTS[size - 1]
    assert tree.root(size) == ROOTS[size - 1]
    frontier = MerkleFrontier()
    for h in hashes:
        frontier.append(h)
    assert frontier.root() == ROOTS[size - 1]


def test_incremental_roots() -> None:
    t = MemoryTree()
    assert t.root() == EMPTY_ROOT
    for i, leaf in enumerate(LEAVES):
        assert t.append(leaf) == i
        assert t.size == i + 1
        assert t.root() == ROOTS[i]


# --- inclusion ---------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_known_answers(
    index: int, size: int, proof: list[bytes], tree: MemoryTree
) -> None:
    assert tree.inclusion_proof(index, size) == proof
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size - 1])


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, lh: bytes
) -> list[tuple[int, int, list[bytes], bytes, bytes]]:
    # Mirrors corruptInclusionProof in transparency-dev/merkle.
    probes = [
        (index - 1, size, proof, root, lh),
        (index + 1, size, proof, root, lh),
        (index ^ 2, size, proof, root, lh),
        (index, size * 2, proof, root, lh),
        (index, size // 2, proof, root, lh),
        (index, size, proof, root, b"WrongLeaf"),
        (index, size, proof, EMPTY_ROOT, lh),
        (index, size, proof, SOME_HASH, lh),
        (index, size, [*proof, b""], root, lh),
        (index, size, [*proof, root], root, lh),
        (index, size, [b"", *proof], root, lh),
        (index, size, [root, *proof], root, lh),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((index, size, wrong, root, lh))
    if proof:
        probes.append((index, size, proof[:-1], root, lh))
    if len(proof) > 1:
        probes.append((index, size, [proof[0], SOME_HASH, *proof[1:]], root, lh))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS[1:])
def test_inclusion_corruptions_rejected(index: int, size: int, proof: list[bytes]) -> None:
    root, lh = ROOTS[size - 1], leaf_hash(LEAVES[index])
    for p_index, p_size, p_proof, p_root, p_leaf in _inclusion_probes(index, size, proof, root, lh):
        with pytest.raises(InclusionProofError):
            verify_inclusion(p_leaf, p_index, p_size, p_proof, p_root)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1)])
def test_inclusion_index_out_of_range(index: int, size: int) -> None:
    with pytest.raises(InclusionProofError, match="not in a tree"):
        verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)
    with pytest.raises(MerkleError, match="index must be < size"):
        inclusion_plan(index, size)


def test_inclusion_single_entry() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)
    with pytest.raises(InclusionProofError):
        verify_inclusion(h, 0, 1, [], SOME_HASH)
    with pytest.raises(InclusionProofError, match="32 bytes"):
        verify_inclusion(b"", 0, 1, [], h)
    with pytest.raises(InclusionProofError, match="32 bytes"):
        verify_inclusion(h, 0, 1, [], b"")


def test_inclusion_rejects_bad_argument_types() -> None:
    h = leaf_hash(b"x")
    with pytest.raises(InclusionProofError, match="int"):
        verify_inclusion(h, True, 2, [h], h)
    with pytest.raises(InclusionProofError, match="negative"):
        verify_inclusion(h, -1, 2, [h], h)
    with pytest.raises(MerkleError, match="negative"):
        inclusion_plan(-1, 3)


# --- consistency -------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_known_answers(
    old: int, new: int, proof: list[bytes], tree: MemoryTree
) -> None:
    assert tree.consistency_proof(old, new) == proof
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS[1:])
def test_consistency_corruptions_rejected(old: int, new: int, proof: list[bytes]) -> None:
    # Mirrors corruptConsistencyProof in transparency-dev/merkle.
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    wrong_root = b"WrongRoot".ljust(32, b"!")
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, wrong_root, r2, proof),
        (old, new, r1, wrong_root, proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((old, new, r1, r2, wrong))
    for p_old, p_new, p_r1, p_r2, p_proof in probes:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(p_old, p_new, p_r1, p_r2, p_proof)
    with pytest.raises(ConsistencyProofError, match="32 bytes"):
        verify_consistency(old, new, r1, r2, [*proof, b""])


def test_consistency_trivial_cases() -> None:
    r = ROOTS[0]
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(1, 1, r, r, [])
    cases = [
        (0, 0, EMPTY_ROOT, SOME_HASH, []),  # empty tree has one root
        (0, 1, SOME_HASH, r, []),  # old root is not the empty-tree hash
        (0, 1, EMPTY_ROOT, r, [r]),  # proof from empty tree must be empty
        (1, 1, r, SOME_HASH, []),  # equal sizes, different roots
        (1, 1, r, r, [r]),  # equal sizes need an empty proof
        (1, 0, r, EMPTY_ROOT, []),  # time travel
        (2, 1, r, r, []),
        (1, 2, r, ROOTS[1], []),  # missing proof
    ]
    for old, new, r1, r2, proof in cases:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(old, new, r1, r2, proof)


@pytest.mark.parametrize(("old", "new"), [(0, 0), (0, 3), (4, 3), (-1, 2)])
def test_consistency_plan_validates_sizes(old: int, new: int) -> None:
    with pytest.raises(MerkleError):
        consistency_plan(old, new)


def test_consistency_plan_equal_sizes_is_empty() -> None:
    assert len(consistency_plan(5, 5)) == 0
    assert consistency_plan(5, 5).assemble({}) == []


# --- node decomposition and plans ----------------------------------------------


def test_node_ref_geometry() -> None:
    ref = NodeRef(3, 2)
    assert (ref.start, ref.end) == (16, 24)
    assert NodeRef(3, 2) == NodeRef(3, 2)
    assert len({NodeRef(3, 2), NodeRef(3, 2), NodeRef(2, 3)}) == 2
    with pytest.raises(AttributeError):
        ref.level = 4  # type: ignore[misc]


def test_subtree_refs_binary_expansion() -> None:
    assert subtree_refs(0, 0) == []
    assert subtree_refs(0, 1) == [NodeRef(0, 0)]
    assert subtree_refs(0, 8) == [NodeRef(3, 0)]
    assert subtree_refs(0, 7) == [NodeRef(2, 0), NodeRef(1, 2), NodeRef(0, 6)]
    assert subtree_refs(8, 13) == [NodeRef(2, 2), NodeRef(0, 12)]
    assert subtree_refs(16, 32) == [NodeRef(4, 1)]
    assert subtree_refs(5, 6) == [NodeRef(0, 5)]
    assert frontier_refs(6) == [NodeRef(2, 0), NodeRef(1, 2)]


@pytest.mark.parametrize(("start", "end"), [(1, 3), (2, 5), (4, 9), (3, 1), (-1, 2)])
def test_subtree_refs_rejects_non_rfc_ranges(start: int, end: int) -> None:
    with pytest.raises(MerkleError):
        subtree_refs(start, end)


def test_hash_range_matches_mth(tree: MemoryTree) -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    for size in range(1, 9):
        assert hash_range(subtree_refs(0, size), tree.nodes) == ROOTS[size - 1]
    assert hash_range(subtree_refs(4, 7), tree.nodes) == root_from_leaf_hashes(hashes[4:7])


def test_hash_range_rejects_misshapen_refs(tree: MemoryTree) -> None:
    bad = [
        [NodeRef(0, 0), NodeRef(1, 1)],  # ascending levels: not an RFC subtree fold
        [NodeRef(1, 0), NodeRef(0, 3)],  # gap
        [NodeRef(1, 1), NodeRef(0, 4)],  # [2, 5) is not aligned
        [NodeRef(0, 1), NodeRef(0, 2)],  # equal levels
        [NodeRef(-1, 0), NodeRef(0, 1)],  # negative level
        [NodeRef(2, 0), NodeRef(-1, 8)],
        [NodeRef(0, -1)],
    ]
    for refs in bad:
        with pytest.raises(MerkleError, match="subtree_refs"):
            hash_range(refs, tree.nodes)


def test_assemble_reports_missing_and_corrupt_nodes(tree: MemoryTree) -> None:
    plan = inclusion_plan(5, 8)
    nodes = {ref: tree.nodes[ref] for ref in plan.refs()}
    assert plan.assemble(nodes) == INCLUSION_VECTORS[2][2]
    missing = dict(nodes)
    del missing[NodeRef(2, 0)]
    with pytest.raises(MerkleError, match="level=2 index=0"):
        plan.assemble(missing)
    corrupt = dict(nodes)
    corrupt[NodeRef(2, 0)] = b"short"
    with pytest.raises(MerkleError, match="32 bytes"):
        plan.assemble(corrupt)


def test_plans_touch_logarithmically_many_nodes() -> None:
    size = 1_000_003
    log = size.bit_length()
    for index in (0, 1, 500_000, size - 2, size - 1):
        plan = inclusion_plan(index, size)
        assert len(plan) <= log + 1
        assert len(plan.refs()) <= 2 * log
    for old in (1, 2, 3, 1023, 1024, 700_001, size - 1):
        plan = consistency_plan(old, size)
        assert len(plan.refs()) <= 3 * log
    assert len(root_plan(size).refs()) == size.bit_count()


def test_plan_leaf_and_interior_split() -> None:
    plan = inclusion_plan(5, 8)
    assert plan.refs() == {NodeRef(0, 4), NodeRef(1, 3), NodeRef(2, 0)}
    assert plan.leaf_indices() == {4}
    assert plan.interior_refs() == {NodeRef(1, 3), NodeRef(2, 0)}
    assert isinstance(plan, ProofPlan)


# --- frontier and memory tree ----------------------------------------------------


def test_frontier_emits_completed_nodes() -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    f = MerkleFrontier()
    assert f.append(hashes[0]) == []
    assert f.append(hashes[1]) == [(NodeRef(1, 0), node_hash(hashes[0], hashes[1]))]
    assert f.append(hashes[2]) == []
    emitted = f.append(hashes[3])
    assert [ref for ref, _ in emitted] == [NodeRef(1, 1), NodeRef(2, 0)]
    assert emitted[-1][1] == ROOTS[3]
    assert f.size == 4
    assert f.hashes == (ROOTS[3],)
    assert f.refs() == [NodeRef(2, 0)]


def test_frontier_restore_from_nodes(tree: MemoryTree) -> None:
    for size in range(9):
        f = MerkleFrontier.from_nodes(size, tree.nodes)
        assert f.size == size
        assert f.root() == (ROOTS[size - 1] if size else EMPTY_ROOT)
        for leaf in LEAVES[size:]:
            f.append(leaf_hash(leaf))
        assert f.root() == ROOTS[7]


def test_frontier_copy_is_independent() -> None:
    f = MerkleFrontier()
    f.append(leaf_hash(b"a"))
    g = f.copy()
    g.append(leaf_hash(b"b"))
    assert (f.size, g.size) == (1, 2)
    assert f.root() == leaf_hash(b"a")


def test_frontier_validation() -> None:
    h = leaf_hash(b"x")
    with pytest.raises(MerkleError, match="holds 2 hashes"):
        MerkleFrontier(3, [h])
    with pytest.raises(MerkleError, match="32 bytes"):
        MerkleFrontier(1, [b"short"])
    with pytest.raises(MerkleError, match="negative"):
        MerkleFrontier(-1, [])
    with pytest.raises(MerkleError, match="32 bytes"):
        MerkleFrontier().append(b"short")
    with pytest.raises(MerkleError, match="not supplied"):
        MerkleFrontier.from_nodes(3, {NodeRef(1, 0): h})


def test_frontier_extend_matches_append() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(37)]
    a, b = MerkleFrontier(), MerkleFrontier()
    emitted = [item for h in hashes for item in a.append(h)]
    assert b.extend(hashes) == emitted
    assert a.root() == b.root() == root_from_leaf_hashes(hashes)


def test_memory_tree_size_arguments(tree: MemoryTree) -> None:
    with pytest.raises(MerkleError, match="beyond the current size"):
        tree.root(9)
    with pytest.raises(MerkleError, match="beyond the current size"):
        tree.inclusion_proof(0, 9)
    assert tree.root(0) == EMPTY_ROOT
    assert tree.inclusion_proof(7) == tree.inclusion_proof(7, 8)
    assert tree.consistency_proof(6) == CONSISTENCY_VECTORS[2][2]
    assert len(tree.nodes) == 8 + 4 + 2 + 1
    assert set(tree.nodes) == {NodeRef(lv, i) for lv in range(4) for i in range(8 >> lv)}
    for missing in (NodeRef(4, 0), NodeRef(-1, 0), NodeRef(0, -1), NodeRef(0, 8)):
        with pytest.raises(KeyError):
            tree.nodes[missing]


def test_extend_levels_refuses_a_bad_leaf_hash_before_changing_anything() -> None:
    frontier = MerkleFrontier()
    frontier.extend_levels([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
    before = (frontier.size, frontier.hashes)
    with pytest.raises(MerkleError, match="leaf hash 1 must be 32 bytes"):
        frontier.extend_levels([leaf_hash(b"d"), b"short"])
    assert (frontier.size, frontier.hashes) == before
    assert frontier.extend_levels([]) == [] and (frontier.size, frontier.hashes) == before
