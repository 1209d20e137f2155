"""The near-shore ledger: the Merkle tree over its entries and signed checkpoints."""
