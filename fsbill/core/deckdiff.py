"""What importing a deck would change, prefix by prefix (`fsbill rates import --dry-run`). Pure.

Both decks come in as rows (ROW_FIELDS) sorted by prefix, and are merged as two streams: the
stored deck is never held in memory, only one prefix's rows at a time.

Per prefix, comparing the deck before with the deck after the import (the file alone with
--replace; the stored rows plus the file's without it):

- added: only after; removed: only before;
- dearer / cheaper: its highest rate per minute went up / down (a prefix with several rows,
  time bands or validity windows, is compared by its highest rate);
- changed: the same highest rate but other terms differ (connect fee, increments, bands,
  validity, another rate, the description);
- unchanged: the same rows.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fsbill.core.deckrows import Row
from fsbill.core.money import Money

KINDS = ("added", "removed", "dearer", "cheaper", "changed", "unchanged")
LISTED = KINDS[:-1]
DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class PrefixChange:
    prefix: str
    before: Money | None  # highest rate per minute before (None: not in the deck)
    after: Money | None
    description: str

    def as_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "rate_before": None if self.before is None else str(self.before),
            "rate_after": None if self.after is None else str(self.after),
            "description": self.description,
        }


@dataclass
class DeckDiff:
    limit: int = DEFAULT_LIMIT  # prefixes listed per kind (the counts are complete)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    listed: dict[str, list[PrefixChange]] = field(default_factory=lambda: {k: [] for k in LISTED})
    rates_before: int = 0
    rates_after: int = 0

    def note(self, kind: str, change: PrefixChange) -> None:
        self.counts[kind] += 1
        shown = self.listed.get(kind)
        if shown is not None and len(shown) < self.limit:
            shown.append(change)

    def as_json(self) -> dict[str, Any]:
        return {
            "rates_before": self.rates_before,
            "rates_after": self.rates_after,
            "counts": dict(self.counts),
            "limit": self.limit,
            **{kind: [c.as_json() for c in self.listed[kind]] for kind in LISTED},
        }


def _groups(rows: Iterable[Row]) -> Iterator[tuple[str, list[Row]]]:
    for prefix, group in itertools.groupby(rows, key=lambda row: row[0]):
        yield prefix, list(group)


def _highest(rows: list[Row]) -> Money:
    return Money(max(row[1] for row in rows))


def _description(rows: list[Row]) -> str:
    return next((row[6] for row in rows if row[6]), "")


def diff_decks(before: Iterable[Row], file_rows: Iterable[Row], replace: bool, limit: int = DEFAULT_LIMIT) -> DeckDiff:
    """Compare the stored deck `before` with the deck after importing `file_rows` (both sorted
    by prefix, as Python orders strings: the database must sort with a binary collation)."""
    diff = DeckDiff(limit=max(0, limit))
    old_groups, new_groups = _groups(before), _groups(file_rows)
    old = next(old_groups, None)
    new = next(new_groups, None)
    while old is not None or new is not None:
        if new is None or (old is not None and old[0] < new[0]):
            assert old is not None
            prefix, rows = old
            diff.rates_before += len(rows)
            if replace:
                diff.note("removed", PrefixChange(prefix, _highest(rows), None, _description(rows)))
            else:
                diff.rates_after += len(rows)
                diff.counts["unchanged"] += 1
            old = next(old_groups, None)
        elif old is None or new[0] < old[0]:
            prefix, rows = new
            diff.rates_after += len(rows)
            diff.note("added", PrefixChange(prefix, None, _highest(rows), _description(rows)))
            new = next(new_groups, None)
        else:
            prefix, old_rows = old
            after = new[1] if replace else old_rows + new[1]
            diff.rates_before += len(old_rows)
            diff.rates_after += len(after)
            high_before, high_after = _highest(old_rows), _highest(after)
            change = PrefixChange(prefix, high_before, high_after, _description(after))
            if high_after > high_before:
                diff.note("dearer", change)
            elif high_after < high_before:
                diff.note("cheaper", change)
            elif Counter(old_rows) != Counter(after):
                diff.note("changed", change)
            else:
                diff.counts["unchanged"] += 1
            old, new = next(old_groups, None), next(new_groups, None)
    return diff


__all__ = ["DEFAULT_LIMIT", "KINDS", "DeckDiff", "PrefixChange", "diff_decks"]
