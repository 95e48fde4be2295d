"""Rate deck CSV files: parse and validate, all or nothing. Pure (no database, no clock).

Format: a header line, then one rate per line.

    prefix,rate,connect_fee,initial_increment,increment,min_duration,description,effective_from,effective_until,weekdays,time_from,time_to
    49,0.0100,0,1,1,0,Germany,,,,,
    4915,0.0800,0.05,30,6,0,Germany mobile,2026-01-01,,,,
    44,0.0050,,60,60,,UK nights and weekends,,,"6,7",,
    44,0.0080,,60,60,,UK weekday nights,,,1-5,22:00,06:00

The separator is ',' as above, or ';', tab or '|': detected from the header line unless given
(`delimiter`). With `decimal_comma` amounts are written '0,0125' (carriers' semicolon exports);
it needs a separator other than ','. Refusals name the separator they read with.

Columns (names are case-insensitive, any order; only `prefix` and `rate` are required, an
empty cell takes the default; `initial_increment_s`, `increment_s` and `min_duration_s` are
accepted for the three increment columns, the names fsbill's outputs use):

- prefix: ASCII digits only, 1-32 of them (no '+', no spaces: the deck is keyed by
  normalized numbers, see fsbill.core.rating.normalize_number).
- rate: price per minute; connect_fee (default 0): charged once per answered call. Both exact
  non-negative decimals with at most 6 decimals ('0.0125'); no exponents, no commas.
- initial_increment (default 1), increment (default 1): seconds, 1..86400.
- min_duration (default 0): seconds, 0..86400.
- description: free text.
- effective_from (inclusive), effective_until (exclusive): ISO 8601 date ('2026-01-01') or
  date-time ('2026-01-01T08:00', '2026-01-01T08:00:00+01:00'); without an offset they are
  in the tariff's time zone. from must be before until.
- weekdays: ISO weekdays, 1 = Monday .. 7 = Sunday, as digits and ranges separated by
  commas: '1-5', '6,7', '12345', '1-3,5'. Empty = every day.
- time_from, time_to: 'HH:MM' local time in the tariff's zone; both or neither; time_to may
  be '24:00'; from later than to wraps past midnight ('22:00' to '06:00'); equal is refused.

A prefix may have several rows only if no two of them can apply at the same moment: their
validity windows do not overlap, or their bands (weekdays x time window) do not overlap. A
row without a band is the prefix's default and a banded row overrides it inside its band, so
a default row and a banded row never clash.

Every error is a RateDeckError carrying the 1-based physical line number of the file.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fsbill.core.deckcells import DELIMITERS, RowParser, columns_of, delimiter_name, header_names, parse_mapping
from fsbill.core.deckfile import DEFAULT_ENCODING, check_encoding, decode_lines
from fsbill.core.deckoverlap import check_against, check_duplicates, duplicate_groups, overlaps
from fsbill.core.deckrows import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ROW_FIELDS,
    DeckRows,
    ParsedDeck,
    RateBuilder,
    Row,
    prefix_order,
)
from fsbill.core.money import RoundingRule
from fsbill.errors import RateDeckError

PROGRESS_EVERY = 10_000


@dataclass(frozen=True)
class DeckFormat:
    """How a deck file is written, when it is not fsbill's own format (see `parse_rows`):
    its separator, decimal commas, a column mapping {field: header name}, whether unmapped
    columns are ignored, the international prefix removed from prefixes ('0049' -> '49'; the
    `international_prefix` setting) and the file's encoding (read by the database layer)."""

    delimiter: str | None = None
    decimal_comma: bool = False
    columns: Mapping[str, str] | None = None
    ignore_extra: bool = False
    international_prefix: str = "00"
    encoding: str = DEFAULT_ENCODING

    def parse_options(self) -> dict[str, Any]:
        """The keyword arguments of `parse_rows` (the encoding is not one: text comes in)."""
        return {
            "delimiter": self.delimiter,
            "decimal_comma": self.decimal_comma,
            "columns": self.columns,
            "ignore_extra": self.ignore_extra,
            "international_prefix": self.international_prefix,
        }


def parse_deck(
    lines: Iterable[str],
    rounding: RoundingRule,
    timezone: str,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> ParsedDeck:
    """Every rate of a deck file, or a RateDeckError for its first bad line.

    `lines` is a text file or any iterable of lines; `progress(n)` is called with the number of
    rows (not lines: the header and blank lines do not count) read so far, every
    PROGRESS_EVERY rows and at the end. `options`: those of `parse_rows`.
    """
    rows = parse_rows(lines, timezone, progress, **options)
    build = RateBuilder(rounding)
    deck = ParsedDeck()
    deck.extend(build(row) for row in rows)
    deck.lines = list(rows.lines)
    return deck


def sniff_delimiter(header: str, columns: Mapping[str, str] | None = None) -> str:
    """The column separator of a deck, from its header line: the first of DELIMITERS that
    splits it into cells naming both required columns (under their `columns` mapping, if
    any). When none does, the one that splits it into the most cells (',' if none splits it),
    so that the refusal names the columns as the file has them."""
    known = header_names(dict(columns or {}))
    for candidate in DELIMITERS:
        cells = {cell.strip().strip('"').lstrip("\ufeff").strip().lower() for cell in header.split(candidate)}
        names = {known[cell] for cell in cells if cell in known}
        if all(c in names for c in REQUIRED_COLUMNS):
            return candidate
    most = max(DELIMITERS, key=header.count)
    return most if header.count(most) else ","


def parse_rows(
    lines: Iterable[str],
    timezone: str,
    progress: Callable[[int], None] | None = None,
    *,
    delimiter: str | None = None,
    decimal_comma: bool = False,
    columns: Mapping[str, str] | None = None,
    ignore_extra: bool = False,
    international_prefix: str = "00",
) -> DeckRows:
    """`parse_deck` without building Rate objects: validated rows as stored (ROW_FIELDS).

    `delimiter`: the column separator; None detects it from the header (`sniff_delimiter`:
    ',', ';', tab or '|'). `decimal_comma`: amounts are written with a decimal comma
    ('0,0125', as carriers' semicolon-separated exports do); it needs a separator other than
    ','. Without it an amount with a comma is refused, naming the option.

    `columns`: {field: header name} for a file with its own column names ('prefix': 'Code');
    fields it leaves out are looked for under fsbill's names. A column that is neither is
    refused, naming it, unless `ignore_extra`. `international_prefix`: a prefix written
    '+49' or '0049' (with the international prefix '00') is stored as '49', the way dialled
    numbers are normalised; DeckRows.written remembers which rows were.
    """
    zone = ZoneInfo(timezone)
    source = iter(lines)
    skipped = 0
    first = None
    for text in source:
        if text.strip():
            first = text
            break
        skipped += 1  # leading blank lines
    if first is None:
        raise RateDeckError(1, f"empty deck: a header line with at least {','.join(REQUIRED_COLUMNS)} is required")
    if delimiter is None:
        delimiter = sniff_delimiter(first, columns)
    if delimiter == "," and decimal_comma:
        raise RateDeckError(
            skipped + 1, "decimal commas need a column separator other than ',' (the header is separated by ',')"
        )
    reader = csv.reader(itertools.chain([first], source), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise RateDeckError(skipped + 1, f"unreadable CSV: {exc}") from None
    header_line = skipped + reader.line_num
    positions = columns_of(header, header_line, delimiter, dict(columns or {}), ignore_extra)
    row_parser = RowParser(
        positions, zone, delimiter, decimal_comma, width=len(header), international_prefix=international_prefix
    )
    deck = DeckRows()
    deck.delimiter = delimiter
    deck.international_prefix = international_prefix
    previous_end = reader.line_num
    count = 0
    try:
        for row in reader:
            line = skipped + previous_end + 1
            previous_end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            row_parser.parse_into(deck, row, line)
            count += 1
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(count)
    except csv.Error as exc:
        raise RateDeckError(skipped + reader.line_num, f"unreadable CSV: {exc}") from None
    if progress is not None:
        progress(count)
    deck.order = prefix_order(deck.prefixes)
    check_duplicates(deck, duplicate_groups(deck))
    return deck


__all__ = [
    "COLUMNS",
    "DELIMITERS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ROW_FIELDS",
    "DeckFormat",
    "DeckRows",
    "ParsedDeck",
    "RateBuilder",
    "Row",
    "check_against",
    "check_encoding",
    "decode_lines",
    "delimiter_name",
    "overlaps",
    "parse_deck",
    "parse_mapping",
    "parse_rows",
    "sniff_delimiter",
]
