"""Governed SQL: parse, authorise, rewrite onto policy views, run sandboxed, disclose safely."""
