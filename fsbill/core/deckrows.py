"""A rate deck's validated rows: the stored row layout (ROW_FIELDS), the column store a parse
fills (DeckRows) and the Rate objects built from rows (RateBuilder). Pure.

The file format and the parser are in fsbill.core.ratedeck.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

from fsbill.core.money import Money, RoundingRule
from fsbill.core.rating import Rate, rate_from_values

REQUIRED_COLUMNS = ("prefix", "rate")
OPTIONAL_COLUMNS = (
    "connect_fee",
    "initial_increment",
    "increment",
    "min_duration",
    "description",
    "effective_from",
    "effective_until",
    "weekdays",
    "time_from",
    "time_to",
)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
MAX_SECONDS_FIELD = 86_400
# How a row's prefix was written (DeckRows.written): as stored, or normalised from '+49' or
# from the international prefix ('0049').
WRITTEN_AS_IS, WRITTEN_PLUS, WRITTEN_INTERNATIONAL = 0, 1, 2


# A validated row, as stored (the columns of the `rate` table after tariff_id, in order):
ROW_FIELDS = (
    "prefix",
    "rate_micros",
    "connect_fee_micros",
    "initial_increment_s",
    "increment_s",
    "min_duration_s",
    "description",
    "effective_from_us",
    "effective_until_us",
    "weekdays",
    "time_from_min",
    "time_to_min",
)
Row = tuple[Any, ...]  # (str, int, int, int, int, int, str, int|None, int|None, str|None, int|None, int|None)


class ParsedDeck(list[Any]):
    """The rates (or rows) of a deck file in file order; `lines[i]` is the line of item i."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []


class RateBuilder:
    """Rates from validated rows, sharing equal amounts and descriptions between them (a
    million-row deck has a few thousand distinct prices)."""

    def __init__(self, rounding: RoundingRule) -> None:
        self.rounding = rounding
        self.amounts: dict[int, Money] = {}
        self.texts: dict[str, str] = {}
        self.days: dict[str, frozenset[int]] = {}

    def __call__(self, row: Row) -> Rate:
        (
            prefix,
            rate_micros,
            fee_micros,
            initial,
            increment,
            minimum,
            description,
            since,
            until,
            weekdays,
            start,
            end,
        ) = row
        amounts = self.amounts
        rate = amounts.get(rate_micros)
        if rate is None:
            rate = amounts[rate_micros] = Money(rate_micros)
        fee = amounts.get(fee_micros)
        if fee is None:
            fee = amounts[fee_micros] = Money(fee_micros)
        if description:
            description = self.texts.setdefault(description, description)
        days = None
        if weekdays is not None:
            days = self.days.get(weekdays)
            if days is None:
                days = self.days[weekdays] = frozenset(int(ch) for ch in weekdays)
        return rate_from_values(
            (
                prefix,
                rate,
                fee,
                initial,
                increment,
                minimum,
                self.rounding,
                description,
                since,
                until,
                days,
                start,
                end,
            )
        )


class DeckRows:
    """The validated rows of a deck file, stored by column: a million rows as tuples of twelve
    Python objects are ~400 MB; as columns (the few distinct increment/validity/band
    combinations and descriptions stored once) they are ~100 MB. Indexing gives a Row tuple
    (ROW_FIELDS order); `lines[i]` is the 1-based file line of row i."""

    def __init__(self) -> None:
        self.prefixes: list[str] = []
        self.written = array("b")  # WRITTEN_* per row
        self.international_prefix = "00"
        self.rates = array("q")
        self.descriptions = array("I")  # index into self.texts
        self.tail_ids = array("I")  # index into self.tails
        self.lines = array("I")
        self.texts: list[str] = [""]
        self.tails: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
        self.order: array[int] | None = None  # row indices in prefix order (set by parse_rows)
        self.delimiter = ","

    def __len__(self) -> int:
        return len(self.prefixes)

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def __getitem__(self, i: int) -> Row:
        head, tail = self.tails[self.tail_ids[i]]
        return (self.prefixes[i], self.rates[i]) + head + (self.texts[self.descriptions[i]],) + tail

    def __iter__(self) -> Iterator[Row]:
        for i in range(len(self.prefixes)):
            yield self[i]

    def written_prefix(self, i: int) -> str:
        """Row i's prefix as the file wrote it."""
        how = self.written[i]
        lead = "+" if how == WRITTEN_PLUS else self.international_prefix if how == WRITTEN_INTERNATIONAL else ""
        return lead + self.prefixes[i]

    def normalised(self) -> int:
        """How many rows had their prefix normalised ('+49' or '0049' stored as '49')."""
        return len(self.written) - self.written.count(WRITTEN_AS_IS)

    def in_prefix_order(self) -> Iterator[Row]:
        """The rows sorted by prefix (file order among equal prefixes)."""
        order = self.order if self.order is not None else prefix_order(self.prefixes)
        for i in order:
            yield self[i]


def prefix_order(prefixes: list[str]) -> array[int]:
    return array("I", sorted(range(len(prefixes)), key=prefixes.__getitem__))


__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ROW_FIELDS",
    "DeckRows",
    "ParsedDeck",
    "RateBuilder",
    "Row",
]
