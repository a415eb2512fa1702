"""Encrypted, versioned dataset storage and its keys."""
