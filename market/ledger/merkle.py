"""The RFC 9162 (Certificate Transparency v2) Merkle tree over the ledger, §2.1.

- leaf hash  = SHA-256(0x00 ‖ leaf data); node hash = SHA-256(0x01 ‖ left ‖ right);
- MTH({}) = SHA-256(""); MTH(D[n]) splits at k, the largest power of two below n;
- inclusion proofs PATH(m, D[n]) and consistency proofs PROOF(m, D[n]) with their verification
  algorithms (§2.1.3.2 and §2.1.4.2), written from the RFC's text.

Stored form. Every subtree in an RFC 9162 tree of any size is either *perfect* (2^level leaves
starting at a multiple of 2^level) or the right edge of the tree, which splits into perfect
subtrees by the binary digits of its size. So storing the perfect nodes ``(level, position)``
(2n − 1 of them for n leaves, written once, never changed) answers every root and proof with
O(log n) reads: :func:`inclusion_ranges` / :func:`consistency_ranges` say which subtree hashes a
proof needs, :func:`perfect_nodes_of` which stored nodes make each of them, :func:`fold` combines
them. :class:`MemoryTree` keeps the same nodes in lists (tests, benchmarks, the verifier's twin).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]  # [start, end) of leaf indices
Node = tuple[int, int]  # (level, position): leaves [position·2^level, (position+1)·2^level)


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(size: int) -> int:
    """k: the largest power of two smaller than ``size`` (size ≥ 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes (in memory, O(n))."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return MemoryTree(leaf_hashes).root(len(leaf_hashes))


# --- which subtrees a proof needs --------------------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose MTH form PATH(index, D[size]), in proof order (leaf side first)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    path: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    path.reverse()
    return path


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees whose MTH form PROOF(old_size, D[new_size]) (RFC 9162 SUBPROOF), in order."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[Range] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        size = end - start
        if m == size:
            if not complete:
                proof.append((start, end))
            break
        k = split_point(size)
        if m <= k:
            proof.append((start + k, end))
            end = start + k
        else:
            proof.append((start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def perfect_nodes_of(start: int, end: int) -> list[Node]:
    """The perfect subtrees that make up the subtree [start, end) of an RFC 9162 tree, left to
    right: one per binary digit of its size (``start`` is a multiple of the largest)."""
    nodes: list[Node] = []
    position = start
    remaining = end - start
    while remaining:
        level = remaining.bit_length() - 1
        nodes.append((level, position >> level))
        position += 1 << level
        remaining -= 1 << level
    return nodes


def fold(nodes: Sequence[bytes]) -> bytes:
    """MTH of a subtree from its perfect parts: right to left, node(part, rest)."""
    result = nodes[-1]
    for part in reversed(nodes[:-1]):
        result = node_hash(part, result)
    return result


NodeLookup = Callable[[set[Node]], Mapping[Node, bytes]]


def subtree_hashes(ranges: Sequence[Range], lookup: NodeLookup) -> list[bytes]:
    """The MTH of each range, from one batched ``lookup`` of the perfect nodes they need."""
    parts = [perfect_nodes_of(start, end) for start, end in ranges]
    found = lookup({node for nodes in parts for node in nodes})
    return [fold([found[node] for node in nodes]) for nodes in parts]


# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2) -------------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root that ``proof`` leads to from the leaf hash at ``index``, or None if it cannot
    be a proof for that index and size."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    result = leaf
    for sibling in proof:
        if len(sibling) != HASH_SIZE or sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """True if ``proof`` shows the leaf hash at ``index`` in the tree of ``size`` with ``root``."""
    return len(leaf) == HASH_SIZE and root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True if ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof or any(len(node) != HASH_SIZE for node in proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first_root = second_root = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first_root = node_hash(node, first_root)
            second_root = node_hash(node, second_root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second_root = node_hash(second_root, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and first_root == old_root and second_root == new_root


# --- an in-memory tree of perfect nodes ----------------------------------------------------------


class MemoryTree:
    """The perfect nodes of a tree, level by level, grown leaf by leaf."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        level = 0
        # A node completes at each level where the new leaf closes a right child.
        while len(self.levels[level]) % 2 == 0:
            if len(self.levels) == level + 1:
                self.levels.append([])
            below = self.levels[level]
            self.levels[level + 1].append(node_hash(below[-2], below[-1]))
            level += 1

    def nodes(self, wanted: set[Node]) -> dict[Node, bytes]:
        return {(level, pos): self.levels[level][pos] for level, pos in wanted}

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is beyond the tree ({self.size} leaves)")

    def root(self, size: int) -> bytes:
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return subtree_hashes([(0, size)], self.nodes)[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        return subtree_hashes(inclusion_ranges(index, size), self.nodes)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        self._check_size(new_size)
        return subtree_hashes(consistency_ranges(old_size, new_size), self.nodes)
