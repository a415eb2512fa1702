"""The Merkle tree of RFC 9162 §2.1: hashing, proof generation and proof verification.

The tree is addressed by *blocks*: ``(level, index)`` is the complete subtree over the leaves
``[index * 2**level, (index + 1) * 2**level)``. Only complete blocks are ever stored; the hash of
any other range the RFC's recursion needs (those touching the right edge of a tree whose size is
not a power of two) is folded from the few complete blocks that tile it. So a proof is computed
from O(log n) stored hashes, whatever the size of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Block = tuple[int, int]  # (level, index): a complete subtree of 2**level leaves
Range = tuple[int, int]  # [start, end): a subtree of the RFC's recursion
HashLookup = Callable[[Collection[Block]], Mapping[Block, bytes]]


class ProofError(ValueError):
    """A proof does not verify (or a request for one is out of range)."""


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(size: int) -> int:
    """The largest power of two strictly below ``size`` (size >= 2): where RFC 9162 splits."""
    return 1 << ((size - 1).bit_length() - 1)


# ---------------------------------------------------------------------------- ranges and blocks


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes form the audit path of leaf ``index`` (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()  # the path is listed from the leaf upwards
    return ranges


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The subtrees of the consistency proof from ``first`` to ``second`` (RFC 9162 §2.1.4.1)."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    ranges: list[Range] = []
    start, end, complete = 0, second, True
    while first != end:  # i.e. the old tree is not yet the whole of [start, end)
        k = split_point(end - start)
        if first - start <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            complete = False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def blocks_of(start: int, end: int) -> list[Block]:
    """The complete blocks tiling ``[start, end)``, largest first.

    Every range of the RFC's recursion starts at a multiple of a power of two at least as large
    as itself, so the greedy tiling by descending powers of two is always aligned.
    """
    blocks: list[Block] = []
    while start < end:
        level = (end - start).bit_length() - 1
        size = 1 << level
        if start % size:
            raise ValueError(f"[{start}, {end}) is not a subtree of the tree")
        blocks.append((level, start >> level))
        start += size
    return blocks


def range_hash(span: Range, hashes: Mapping[Block, bytes]) -> bytes:
    """MTH of ``[start, end)``: the right fold of its blocks, as the RFC's recursion computes it."""
    start, end = span
    if start == end:
        return EMPTY_ROOT
    blocks = blocks_of(start, end)
    result = hashes[blocks[-1]]
    for block in reversed(blocks[:-1]):
        result = node_hash(hashes[block], result)
    return result


def hashes_for(ranges: Iterable[Range], lookup: HashLookup) -> list[bytes]:
    """The hashes of ``ranges``, reading every stored block they need in one lookup."""
    ranges = list(ranges)
    needed = {block for start, end in ranges for block in blocks_of(start, end)}
    found = lookup(needed)
    missing = needed - found.keys()
    if missing:
        raise ProofError(f"{len(missing)} tree nodes are missing from the store")
    return [range_hash(span, found) for span in ranges]


def root_hash(size: int, lookup: HashLookup) -> bytes:
    return hashes_for([(0, size)], lookup)[0] if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, lookup: HashLookup) -> list[bytes]:
    return hashes_for(inclusion_ranges(index, size), lookup)


def consistency_proof(first: int, second: int, lookup: HashLookup) -> list[bytes]:
    return hashes_for(consistency_ranges(first, second), lookup)


# ---------------------------------------------------------------------------- appending


def frontier(size: int) -> list[Block]:
    """The complete blocks tiling a tree of ``size`` leaves: all an append needs to read."""
    return blocks_of(0, size)


def integrate(
    start: int, leaves: Sequence[bytes], known: Mapping[Block, bytes]
) -> list[tuple[Block, bytes]]:
    """The interior blocks completed by appending ``leaves`` at position ``start``.

    ``known`` must hold the frontier of the tree of size ``start``; the result lists each new
    block once, in the order they complete.
    """
    hashes = dict(known)
    created: list[tuple[Block, bytes]] = []
    for offset, value in enumerate(leaves):
        level, index, current = 0, start + offset, value
        hashes[(0, index)] = value
        while index & 1:
            current = node_hash(hashes[(level, index - 1)], current)
            level, index = level + 1, index >> 1
            hashes[(level, index)] = current
            created.append(((level, index), current))
    return created


class MemoryTree:
    """A whole tree in memory, one packed array of hashes per level (for verifiers and tests)."""

    def __init__(self) -> None:
        self.levels: list[bytearray] = [bytearray()]
        self.size = 0

    @classmethod
    def of_records(cls, records: Iterable[bytes]) -> MemoryTree:
        tree = cls()
        for record in records:
            tree.append(leaf_hash(record))
        return tree

    def append(self, value: bytes) -> None:
        level, index, current = 0, self.size, value
        self.levels[0] += value
        while index & 1:
            left = self._get(level, index - 1)
            current = node_hash(left, current)
            level, index = level + 1, index >> 1
            if level == len(self.levels):
                self.levels.append(bytearray())
            self.levels[level] += current
        self.size += 1

    def _get(self, level: int, index: int) -> bytes:
        return bytes(self.levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def lookup(self, blocks: Collection[Block]) -> dict[Block, bytes]:
        found: dict[Block, bytes] = {}
        for level, index in blocks:
            if level < len(self.levels) and (index + 1) * HASH_SIZE <= len(self.levels[level]):
                found[(level, index)] = self._get(level, index)
        return found

    def leaf(self, index: int) -> bytes:
        return self._get(0, index)

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self.size if size is None else size, self.lookup)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        return inclusion_proof(index, size, self.lookup)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        self._check_size(second)
        return consistency_proof(first, second, self.lookup)

    def _check_size(self, size: int) -> None:
        if size > self.size:
            raise ProofError(f"the tree has only {self.size} leaves, not {size}")


# ---------------------------------------------------------------------------- verification


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2; raises ``ProofError`` unless ``leaf`` is at ``index`` under ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    fn, sn, result = index, size - 1, leaf
    for sibling in proof:
        _check_hash(sibling)
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if result != root:
        raise ProofError("the inclusion proof does not lead to the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2; raises ``ProofError`` unless ``second`` extends ``first``."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == second or first == 0:
        if proof:
            raise ProofError("a proof between these sizes must be empty")
        if first == second and first_root != second_root:
            raise ProofError("two different roots for the same tree size")
        if first == 0 and first_root != EMPTY_ROOT:
            raise ProofError("the root of the empty tree is wrong")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    for value in proof:
        _check_hash(value)
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is itself a node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first_result = second_result = path[0]
    for value in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            first_result = node_hash(value, first_result)
            second_result = node_hash(value, second_result)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            second_result = node_hash(second_result, value)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if first_result != first_root:
        raise ProofError("the consistency proof does not lead to the first root")
    if second_result != second_root:
        raise ProofError("the consistency proof does not lead to the second root")


def _check_hash(value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError("a proof hash has the wrong length")
