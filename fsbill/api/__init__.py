"""The HTTP API (docs/API.md)."""
