"""What a database row is, for the type checker.

A row reaches the adapters either as a peewee model instance (peewee ships no type information,
so its instances are ``Any`` to mypy) or as the ``SimpleNamespace`` that ``statements.row`` builds
from a raw SQL result. Both are read by attribute name, the column's name. ``DbRow`` names that role
in signatures so a reader sees "a row of the database" rather than ``object``.
"""

from typing import Any, TypeAlias

DbRow: TypeAlias = Any
