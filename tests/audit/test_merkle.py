"""RFC 9162 §2.1 Merkle tree: the RFC 6962 reference vectors, round trips and property tests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from civicshare.audit import merkle
from civicshare.audit.merkle import MemoryTree, ProofError

# The reference leaves and roots of RFC 6962's test suite (certificate-transparency).
REFERENCE_LEAVES = [
    bytes.fromhex(value)
    for value in [
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
REFERENCE_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
REFERENCE_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
REFERENCE_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip

TREE_64 = MemoryTree.of_records(b"leaf %d" % i for i in range(64))


def reference_tree() -> MemoryTree:
    return MemoryTree.of_records(REFERENCE_LEAVES)


def naive_root(records: list[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition, as an independent oracle."""
    if not records:
        return hashlib.sha256(b"").digest()
    if len(records) == 1:
        return hashlib.sha256(b"\x00" + records[0]).digest()
    k = 1
    while k * 2 < len(records):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_root(records[:k]) + naive_root(records[k:])).digest()


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert MemoryTree().root().hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(("size", "expected"), sorted(REFERENCE_ROOTS.items()))
def test_reference_roots(size: int, expected: str) -> None:
    assert reference_tree().root(size).hex() == expected


@pytest.mark.parametrize(("index", "size", "expected"), REFERENCE_INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    tree = reference_tree()
    proof = tree.inclusion_proof(index, size)
    assert [value.hex() for value in proof] == expected
    merkle.verify_inclusion(index, size, tree.leaf(index), proof, tree.root(size))


@pytest.mark.parametrize(("first", "second", "expected"), REFERENCE_CONSISTENCY)
def test_reference_consistency_proofs(first: int, second: int, expected: list[str]) -> None:
    tree = reference_tree()
    proof = tree.consistency_proof(first, second)
    assert [value.hex() for value in proof] == expected
    merkle.verify_consistency(first, second, tree.root(first), tree.root(second), proof)


def test_roots_match_the_recursive_definition_up_to_64() -> None:
    records = [b"leaf %d" % i for i in range(64)]
    for size in range(65):
        assert TREE_64.root(size) == naive_root(records[:size])


def test_every_inclusion_proof_round_trips_up_to_64() -> None:
    for size in range(1, 65):
        root = TREE_64.root(size)
        for index in range(size):
            proof = TREE_64.inclusion_proof(index, size)
            merkle.verify_inclusion(index, size, TREE_64.leaf(index), proof, root)


def test_every_consistency_proof_round_trips_up_to_64() -> None:
    for second in range(65):
        root = TREE_64.root(second)
        for first in range(second + 1):
            proof = TREE_64.consistency_proof(first, second)
            merkle.verify_consistency(first, second, TREE_64.root(first), root, proof)


def test_incremental_integration_stores_the_same_nodes_as_the_memory_tree() -> None:
    leaves = [merkle.leaf_hash(b"r%d" % i) for i in range(100)]
    stored: dict[merkle.Block, bytes] = {}
    for start, end in [(0, 1), (1, 7), (7, 8), (8, 45), (45, 64), (64, 100)]:
        known = {block: stored[block] for block in merkle.frontier(start)}
        for block, value in merkle.integrate(start, leaves[start:end], known):
            assert block not in stored, "each node is written once"
            stored[block] = value
        stored.update({(0, i): leaves[i] for i in range(start, end)})
    tree = MemoryTree()
    for value in leaves:
        tree.append(value)
    assert stored == tree.lookup(stored.keys())
    assert merkle.root_hash(100, lambda blocks: stored) == tree.root()


def test_proofs_read_logarithmically_many_blocks() -> None:
    read: list[int] = []

    def counting(blocks: object) -> dict[merkle.Block, bytes]:
        assert isinstance(blocks, set)
        read.append(len(blocks))
        return dict.fromkeys(blocks, b"\x00" * 32)

    size = 10_000_000
    merkle.inclusion_proof(1_234_567, size, counting)
    merkle.consistency_proof(3_333_333, size, counting)
    assert max(read) <= 2 * size.bit_length()


# ---------------------------------------------------------------------------- properties

sizes = st.integers(min_value=0, max_value=64)


@given(size=sizes, data=st.data())
def test_inclusion_verifies_only_for_the_right_leaf_index_and_root(
    size: int, data: st.DataObject
) -> None:
    if size == 0:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(0, 0, TREE_64.leaf(0), [], merkle.EMPTY_ROOT)
        return
    index = data.draw(st.integers(0, size - 1))
    root = TREE_64.root(size)
    proof = TREE_64.inclusion_proof(index, size)
    merkle.verify_inclusion(index, size, TREE_64.leaf(index), proof, root)
    other = data.draw(st.integers(0, 63).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, TREE_64.leaf(other), proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, TREE_64.leaf(index), proof, TREE_64.root(size - 1))


@given(size=st.integers(2, 64), data=st.data())
def test_tampered_inclusion_proofs_fail(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = TREE_64.inclusion_proof(index, size)
    leaf, root = TREE_64.leaf(index), TREE_64.root(size)
    position = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    flipped = bytearray(proof[position])
    flipped[bit // 8] ^= 1 << (bit % 8)
    tampered = [*proof[:position], bytes(flipped), *proof[position + 1 :]]
    for bad in (tampered, proof[:-1], [*proof, proof[0]], proof[::-1] if len(proof) > 1 else []):
        assume(bad != proof)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, leaf, bad, root)
    wrong_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(wrong_index, size, leaf, proof, root)


@given(second=sizes, data=st.data())
def test_consistency_verifies_including_size_zero_and_equal_sizes(
    second: int, data: st.DataObject
) -> None:
    first = data.draw(st.integers(0, second))
    proof = TREE_64.consistency_proof(first, second)
    first_root, second_root = TREE_64.root(first), TREE_64.root(second)
    merkle.verify_consistency(first, second, first_root, second_root, proof)
    if first == second:
        assert proof == []
        with pytest.raises(ProofError):
            merkle.verify_consistency(first, second, first_root, naive_root([b"x"]), [])
    if first == 0:
        assert proof == []


@given(second=st.integers(2, 64), data=st.data())
def test_tampered_consistency_proofs_fail(second: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(1, second - 1))
    proof = TREE_64.consistency_proof(first, second)
    first_root, second_root = TREE_64.root(first), TREE_64.root(second)
    position = data.draw(st.integers(0, len(proof) - 1))
    flipped = bytearray(proof[position])
    flipped[data.draw(st.integers(0, 31))] ^= 0xFF
    tampered = [*proof[:position], bytes(flipped), *proof[position + 1 :]]
    for bad in (tampered, proof[:-1], [*proof, proof[-1]], []):
        with pytest.raises(ProofError):
            merkle.verify_consistency(first, second, first_root, second_root, bad)
    forked = MemoryTree.of_records(b"fork %d" % i for i in range(second))
    with pytest.raises(ProofError):
        merkle.verify_consistency(first, second, forked.root(first), second_root, proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(first, second, first_root, forked.root(second), proof)


def test_out_of_range_requests_are_refused() -> None:
    with pytest.raises(ProofError):
        TREE_64.inclusion_proof(5, 5)
    with pytest.raises(ProofError):
        TREE_64.consistency_proof(6, 5)
    with pytest.raises(ProofError):
        TREE_64.inclusion_proof(0, 65)
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 2, TREE_64.root(3), TREE_64.root(2), [])
