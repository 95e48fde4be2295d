"""Adapters to the database: every SQL statement fsbill runs lives under this package."""

from fsbill.db.connection import Store

__all__ = ["Store"]
