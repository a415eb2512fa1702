"""Verifiable audit log (RFC 9162 Merkle tree, C2SP signed checkpoints)."""
