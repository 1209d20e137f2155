"""RFC 9162 Merkle tree: roots, inclusion and consistency proofs against the published vectors.

The vectors are the Certificate Transparency reference data kept by transparency-dev/merkle
(Apache-2.0): leaf inputs, every perfect node and the roots of trees of size 0–8 from
``testonly/constants.go``; inclusion and consistency proofs from ``proof/verify_test.go``
(their ``leaf`` numbers are 1-based). RFC 6962 and RFC 9162 hash trees identically (SHA-256,
0x00 leaf prefix, 0x01 node prefix), so these are RFC 9162's vectors too.
"""

from __future__ import annotations

import random

import pytest

from market.ledger import merkle

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf number, 1-based; tree size; proof)
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def hexes(values: list[bytes]) -> list[str]:
    return [value.hex() for value in values]


@pytest.fixture(scope="module")
def tree() -> merkle.MemoryTree:
    return merkle.MemoryTree(merkle.leaf_hash(data) for data in LEAF_INPUTS)


def test_every_perfect_node_and_root_matches_the_reference(tree):
    assert [hexes(level) for level in tree.levels] == NODE_HASHES
    assert [tree.root(size).hex() for size in range(9)] == ROOTS
    assert merkle.EMPTY_ROOT.hex() == ROOTS[0]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_reference_and_verify(tree, leaf, size, proof):
    assert hexes(tree.inclusion_proof(leaf - 1, size)) == proof
    path = [bytes.fromhex(h) for h in proof]
    root = bytes.fromhex(ROOTS[size])
    leaf_hash = merkle.leaf_hash(LEAF_INPUTS[leaf - 1])
    assert merkle.verify_inclusion(leaf - 1, size, leaf_hash, path, root)
    # The reference's corruptions: wrong index, size, leaf, root, garbage, flipped bits.
    wrong = [
        (leaf - 2, size, leaf_hash, path, root),
        (leaf, size, leaf_hash, path, root),
        ((leaf - 1) ^ 2, size, leaf_hash, path, root),
        (leaf - 1, size * 2, leaf_hash, path, root),
        (leaf - 1, size // 2, leaf_hash, path, root),
        (leaf - 1, size, merkle.leaf_hash(b"WrongLeaf"), path, root),
        (leaf - 1, size, leaf_hash, path, merkle.EMPTY_ROOT),
        (leaf - 1, size, leaf_hash, path, SOME_HASH),
        (leaf - 1, size, leaf_hash, [*path, b""], root),
        (leaf - 1, size, leaf_hash, [*path, root], root),
        (leaf - 1, size, leaf_hash, [b"", *path], root),
        (leaf - 1, size, leaf_hash, [root, *path], root),
    ]
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        wrong.append((leaf - 1, size, leaf_hash, flipped, root))
    if path:
        wrong.append((leaf - 1, size, leaf_hash, path[:-1], root))
    if len(path) > 1:
        wrong.append((leaf - 1, size, leaf_hash, [path[0], SOME_HASH, *path[1:]], root))
    accepted = [probe for probe in wrong if merkle.verify_inclusion(*probe)]
    assert accepted == []


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_reference_and_verify(tree, old, new, proof):
    assert hexes(tree.consistency_proof(old, new)) == proof
    path = [bytes.fromhex(h) for h in proof]
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert merkle.verify_consistency(old, new, old_root, new_root, path)
    if not path:
        return
    wrong = [
        (old - 1, new, old_root, new_root, path),
        (old + 1, new, old_root, new_root, path),
        (old ^ 2, new, old_root, new_root, path),
        (old, new * 2, old_root, new_root, path),
        (old, new // 2, old_root, new_root, path),
        (old, new, SOME_HASH, new_root, path),
        (old, new, old_root, SOME_HASH, path),
        (old, new, new_root, old_root, path),
        (old, new, old_root, new_root, []),
        (old, new, old_root, new_root, [*path, b""]),
        (old, new, old_root, new_root, [*path, old_root]),
        (old, new, old_root, new_root, [*path, new_root]),
        (old, new, old_root, new_root, [b"", *path]),
        (old, new, old_root, new_root, [old_root, *path]),
        (old, new, old_root, new_root, [new_root, *path]),
        (old, new, old_root, new_root, [path[0], *path]),
        (old, new, old_root, new_root, path[:-1]),
    ]
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        wrong.append((old, new, old_root, new_root, flipped))
    accepted = [probe for probe in wrong if merkle.verify_consistency(*probe)]
    assert accepted == []


def test_trivial_consistency_cases_follow_the_reference():
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.verify_consistency(0, 0, a, a, [])
    assert merkle.verify_consistency(0, 1, a, b, [])
    assert merkle.verify_consistency(1, 1, b, b, [])
    assert not merkle.verify_consistency(0, 0, a, b, [])
    assert not merkle.verify_consistency(1, 1, a, b, [])
    assert not merkle.verify_consistency(1, 0, a, b, [])
    assert not merkle.verify_consistency(2, 1, a, b, [])
    assert not merkle.verify_consistency(1, 2, a, b, [])
    assert not merkle.verify_consistency(0, 1, a, a, [merkle.EMPTY_ROOT])
    assert not merkle.verify_consistency(1, 1, a, a, [merkle.EMPTY_ROOT])


def _reference_mth(leaves: list[bytes]) -> bytes:
    """MTH by the RFC's recursive definition, to check the stored-node arithmetic against."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = merkle.split_point(len(leaves))
    return merkle.node_hash(_reference_mth(leaves[:k]), _reference_mth(leaves[k:]))


def test_every_proof_of_trees_up_to_70_leaves_verifies_against_the_recursive_definition():
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(70)]
    tree = merkle.MemoryTree(leaves)
    rng = random.Random(9162)
    for size in range(1, 71):
        root = _reference_mth(leaves[:size])
        assert tree.root(size) == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
            assert not merkle.verify_inclusion(index, size, leaves[(index + 1) % 70], proof, root)
        for old in range(0, size + 1):
            proof = tree.consistency_proof(old, size)
            assert merkle.verify_consistency(old, size, tree.root(old), root, proof)
        old = rng.randrange(1, size + 1)
        if old < size:
            forged = tree.consistency_proof(old, size)
            assert not merkle.verify_consistency(old, size, SOME_HASH, root, forged)


def test_out_of_range_requests_are_refused():
    tree = merkle.MemoryTree([merkle.leaf_hash(b"x")] * 5)
    for bad in (lambda: tree.inclusion_proof(5, 5), lambda: tree.inclusion_proof(-1, 5)):
        with pytest.raises(ValueError, match="not in a tree"):
            bad()
    with pytest.raises(ValueError, match="beyond the tree"):
        tree.root(6)
    with pytest.raises(ValueError, match="no consistency proof"):
        tree.consistency_proof(4, 3)
    assert not merkle.verify_inclusion(5, 5, merkle.leaf_hash(b"x"), [], tree.root(5))
