"""`evolve`: a frozen value with some fields changed, as `dataclasses.replace` makes it, at a
tenth of its cost.

The call machine replaces its state (fsbill.core.callstate.CallState, 26 fields) a few dozen
times per call, and `dataclasses.replace` re-runs the generated `__init__` each time (about
18 us each against 1.5 us here, docs/BENCHMARKS.md). A class that checks its fields in
`__post_init__` (Money, Rate) or has no `__dict__` still goes through `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_COPYABLE: dict[type, frozenset[str]] = {}  # class -> its field names (none: use dataclasses.replace)


def _fields_of(cls: type) -> frozenset[str]:
    if hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(cls))


def evolve(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace(obj, **changes)`, for the dataclasses of the core."""
    cls = type(obj)
    names = _COPYABLE.get(cls)
    if names is None:
        names = _COPYABLE[cls] = _fields_of(cls)
    if not names:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    if not changes.keys() <= names:
        unknown = ", ".join(sorted(changes.keys() - names))
        raise TypeError(f"{cls.__name__} has no field {unknown}")
    new = object.__new__(cls)
    values = new.__dict__
    values.update(obj.__dict__)
    values.update(changes)
    return new
