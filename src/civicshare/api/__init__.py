"""HTTP API adapter: parse, authenticate, call a service, render."""
