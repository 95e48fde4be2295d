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
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from fsbill.core.money import Money, RoundingRule
from fsbill.core.rating import MAX_NUMBER_DIGITS, MINUTES_PER_DAY, Rate, rate_from_values
from fsbill.errors import MoneyError, RateDeckError

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
PROGRESS_EVERY = 10_000
_ALL_DAYS = frozenset(range(1, 8))


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


def parse_deck(
    lines: Iterable[str],
    rounding: RoundingRule,
    timezone: str,
    progress: Callable[[int], None] | None = None,
    *,
    delimiter: str | None = None,
    decimal_comma: bool = False,
) -> ParsedDeck:
    """Every rate of a deck file, or a RateDeckError for its first bad line.

    `lines` is a text file or any iterable of lines; `progress(n)` is called with the number of
    rows (not lines: the header and blank lines do not count) read so far, every
    PROGRESS_EVERY rows and at the end. See `parse_rows` for `delimiter` and `decimal_comma`.
    """
    rows = parse_rows(lines, timezone, progress, delimiter=delimiter, decimal_comma=decimal_comma)
    build = RateBuilder(rounding)
    deck = ParsedDeck()
    deck.extend(build(row) for row in rows)
    deck.lines = list(rows.lines)
    return deck


DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


def delimiter_name(delimiter: str) -> str:
    return _DELIMITER_NAMES.get(delimiter, repr(delimiter))


def sniff_delimiter(header: str) -> str:
    """The column separator of a deck, from its header line: the first of DELIMITERS that
    splits it into cells naming both required columns; ',' when none does (the error then
    names the separator it tried)."""
    for candidate in DELIMITERS:
        names = {cell.strip().strip('"').lstrip("\ufeff").strip().lower() for cell in header.split(candidate)}
        names = {_ALIASES.get(n, n) for n in names}
        if all(c in names for c in REQUIRED_COLUMNS):
            return candidate
    return ","


class DeckRows:
    """The validated rows of a deck file, stored by column: a million rows as tuples of twelve
    Python objects are ~400 MB; as columns (the few distinct increment/validity/band
    combinations and descriptions stored once) they are ~100 MB. Indexing gives a Row tuple
    (ROW_FIELDS order); `lines[i]` is the 1-based file line of row i."""

    def __init__(self) -> None:
        self.prefixes: list[str] = []
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

    def in_prefix_order(self) -> Iterator[Row]:
        """The rows sorted by prefix (file order among equal prefixes)."""
        order = self.order if self.order is not None else _prefix_order(self.prefixes)
        for i in order:
            yield self[i]


def _prefix_order(prefixes: list[str]) -> array[int]:
    return array("I", sorted(range(len(prefixes)), key=prefixes.__getitem__))


def parse_rows(
    lines: Iterable[str],
    timezone: str,
    progress: Callable[[int], None] | None = None,
    *,
    delimiter: str | None = None,
    decimal_comma: bool = False,
) -> DeckRows:
    """`parse_deck` without building Rate objects: validated rows as stored (ROW_FIELDS).

    `delimiter`: the column separator; None detects it from the header (`sniff_delimiter`:
    ',', ';', tab or '|'). `decimal_comma`: amounts are written with a decimal comma
    ('0,0125', as carriers' semicolon-separated exports do); it needs a separator other than
    ','. Without it an amount with a comma is refused, naming the option.
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
        delimiter = sniff_delimiter(first)
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
    columns = _columns(header, header_line, delimiter)
    row_parser = _RowParser(columns, zone, delimiter, decimal_comma)
    deck = DeckRows()
    deck.delimiter = delimiter
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
    deck.order = _prefix_order(deck.prefixes)
    _check_duplicates(deck, _duplicate_groups(deck))
    return deck


def _duplicate_groups(deck: DeckRows) -> list[list[int]]:
    """Row indices sharing a prefix, in file order; groups ordered by where their first
    repeat is in the file (so the error names the earliest bad line)."""
    prefixes = deck.prefixes
    order = deck.order if deck.order is not None else _prefix_order(prefixes)
    groups: list[list[int]] = []
    i = 0
    n = len(order)
    while i < n - 1:
        if prefixes[order[i]] != prefixes[order[i + 1]]:
            i += 1
            continue
        j = i + 1
        while j < n and prefixes[order[j]] == prefixes[order[i]]:
            j += 1
        groups.append(list(order[i:j]))
        i = j
    groups.sort(key=lambda g: g[1])
    return groups


def check_against(existing: Iterable[Rate], new: list[Rate]) -> None:
    """Refuse `new` rows that could apply at the same moment as rows already in the tariff."""
    by_prefix: dict[str, list[int]] = {}
    for i, rate in enumerate(new):
        by_prefix.setdefault(rate.prefix, []).append(i)
    lines = getattr(new, "lines", None)
    for old in existing:
        for i in by_prefix.get(old.prefix, ()):
            if overlaps(old, new[i]):
                line = lines[i] if lines is not None else i + 2
                raise RateDeckError(
                    line,
                    f"prefix {old.prefix} overlaps a rate already in the tariff "
                    f"({_window_text(old)}); import with --replace to replace the whole deck",
                )


def overlaps(a: Rate, b: Rate) -> bool:
    """Whether two rows of the same prefix could both apply at one moment (a deck error)."""
    if (
        a.effective_until_us is not None
        and b.effective_from_us is not None
        and a.effective_until_us <= b.effective_from_us
    ):
        return False
    if (
        b.effective_until_us is not None
        and a.effective_from_us is not None
        and b.effective_until_us <= a.effective_from_us
    ):
        return False
    if a.banded != b.banded:
        return False  # a band overrides the prefix's default inside it
    if not a.banded:
        return True
    days_a = a.weekdays if a.weekdays is not None else _ALL_DAYS
    days_b = b.weekdays if b.weekdays is not None else _ALL_DAYS
    if not days_a & days_b:
        return False
    return any(s1 < e2 and s2 < e1 for s1, e1 in _spans(a) for s2, e2 in _spans(b))


def _spans(rate: Rate) -> list[tuple[int, int]]:
    start, end = rate.time_from_min, rate.time_to_min
    if start is None or end is None:
        return [(0, MINUTES_PER_DAY)]
    if start < end:
        return [(start, end)]
    return [(start, MINUTES_PER_DAY), (0, end)]


def _window_text(rate: Rate) -> str:
    parts = []
    if rate.effective_from_us is not None or rate.effective_until_us is not None:
        parts.append(f"valid {_us_text(rate.effective_from_us)} to {_us_text(rate.effective_until_us)}")
    if rate.weekdays is not None:
        parts.append("weekdays " + "".join(str(d) for d in sorted(rate.weekdays)))
    if rate.time_from_min is not None and rate.time_to_min is not None:
        parts.append(f"{_hhmm(rate.time_from_min)}-{_hhmm(rate.time_to_min)}")
    return ", ".join(parts) or "always"


def _us_text(us: int | None) -> str:
    from fsbill.instant import iso

    return "..." if us is None else str(iso(us))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _check_duplicates(deck: DeckRows, groups: list[list[int]]) -> None:
    build = RateBuilder(RoundingRule())
    for group in groups:
        rates = {i: build(deck[i]) for i in group}
        for j_pos in range(1, len(group)):
            j = group[j_pos]
            for i in group[:j_pos]:
                if overlaps(rates[i], rates[j]):
                    raise RateDeckError(
                        deck.lines[j],
                        f"prefix {rates[j].prefix} duplicates line {deck.lines[i]} "
                        "(validity windows and time bands overlap)",
                    )


# Other names accepted for columns (fsbill's outputs put the unit last: `increment_s`).
_ALIASES = {
    "initial_increment_s": "initial_increment",
    "increment_s": "increment",
    "min_duration_s": "min_duration",
}


def _columns(header: list[str], line: int, delimiter: str = ",") -> dict[str, int]:
    columns: dict[str, int] = {}
    for position, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff").strip().lower()
        name = _ALIASES.get(name, name)
        if name not in COLUMNS:
            raise RateDeckError(
                line,
                f"unknown column {raw.strip()!r} (columns separated by {delimiter_name(delimiter)}; "
                f"known: {','.join(COLUMNS)})",
            )
        if name in columns:
            raise RateDeckError(line, f"column {name!r} appears twice")
        columns[name] = position
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise RateDeckError(
            line, f"missing required column(s) {','.join(missing)} (columns separated by {delimiter_name(delimiter)})"
        )
    return columns


_TAIL_COLUMNS = tuple(c for c in OPTIONAL_COLUMNS if c != "description")
_CACHE_LIMIT = 100_000


class _RowParser:
    """Turns one CSV row into a validated Row.

    Speed matters (a million lines in seconds): a deck repeats the same few combinations of
    fee, increments, validity and band, so the validated values of those cells are
    remembered by their raw text, and only a new combination goes through the checks.
    """

    def __init__(
        self, columns: dict[str, int], zone: ZoneInfo, delimiter: str = ",", decimal_comma: bool = False
    ) -> None:
        self.width = len(columns)
        self.tail = [(c, columns[c]) for c in _TAIL_COLUMNS if c in columns]
        positions = [at for _, at in self.tail]
        self.tail_key = itemgetter(*positions) if positions else (lambda row: ())
        self.prefix_at = columns["prefix"]
        self.rate_at = columns["rate"]
        self.description_at = columns.get("description")
        self.zone = zone
        self.delimiter = delimiter
        self.decimal_comma = decimal_comma
        self.amounts: dict[str, int] = {}
        self.text_ids: dict[str, int] = {"": 0}
        self.tail_ids: dict[object, int] = {}

    def parse_into(self, deck: DeckRows, row: list[str], line: int) -> None:
        """Validate one CSV row and append it to `deck`."""
        if len(row) != self.width:
            raise RateDeckError(
                line,
                f"expected {self.width} fields as in the header, found {len(row)} "
                f"(columns separated by {delimiter_name(self.delimiter)})",
            )
        prefix = row[self.prefix_at].strip()
        if not (prefix.isdigit() and prefix.isascii() and len(prefix) <= MAX_NUMBER_DIGITS):
            raise RateDeckError(
                line, f"prefix {prefix!r} must be 1-{MAX_NUMBER_DIGITS} digits (no '+', spaces or letters)"
            )
        rate = self.amounts.get(row[self.rate_at])
        if rate is None:
            rate = self._amount(row[self.rate_at], "rate", line, required=True)
        key = self.tail_key(row)
        tail_id = self.tail_ids.get(key)
        if tail_id is None:
            tail_id = len(deck.tails)
            deck.tails.append(self._tail(row, line))
            if len(self.tail_ids) < _CACHE_LIMIT:
                self.tail_ids[key] = tail_id
        text_id = 0
        if self.description_at is not None:
            description = row[self.description_at].strip()
            if description:
                text_id = self.text_ids.get(description, -1)
                if text_id < 0:
                    text_id = self.text_ids[description] = len(deck.texts)
                    deck.texts.append(description)
        deck.prefixes.append(prefix)
        deck.rates.append(rate)
        deck.descriptions.append(text_id)
        deck.tail_ids.append(tail_id)
        deck.lines.append(line)

    def _tail(self, row: list[str], line: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The optional cells other than the description, checked."""
        values: dict[str, str] = {}
        for name, position in self.tail:
            cell = row[position].strip()
            if cell:
                values[name] = cell
        fee = self._amount(values.get("connect_fee", ""), "connect_fee", line, required=False)
        initial = self._seconds(values.get("initial_increment"), "initial_increment", line, 1, 1)
        increment = self._seconds(values.get("increment"), "increment", line, 1, 1)
        minimum = self._seconds(values.get("min_duration"), "min_duration", line, 0, 0)
        since = self._instant(values.get("effective_from"), "effective_from", line)
        until = self._instant(values.get("effective_until"), "effective_until", line)
        if since is not None and until is not None and since >= until:
            raise RateDeckError(line, "effective_from must be before effective_until")
        weekdays = values.get("weekdays")
        days = None if weekdays is None else self._weekdays(weekdays, line)
        start = self._time(values.get("time_from"), "time_from", line, allow_24=False)
        end = self._time(values.get("time_to"), "time_to", line, allow_24=True)
        if (start is None) != (end is None):
            raise RateDeckError(line, "time_from and time_to go together: give both or neither")
        if start is not None and end is not None and start % MINUTES_PER_DAY == end % MINUTES_PER_DAY:
            raise RateDeckError(line, "time_from and time_to are equal (leave both empty for all day)")
        days_text = None if days is None else "".join(str(d) for d in sorted(days))
        return (fee, initial, increment, minimum), (since, until, days_text, start, end)

    def _amount(self, cell: str, name: str, line: int, *, required: bool) -> int:
        """An amount cell as micro-units."""
        known = self.amounts.get(cell)
        if known is not None:
            return known
        text = cell.strip()
        if not text:
            if required:
                raise RateDeckError(line, f"{name} is empty")
            return 0
        written = text
        if self.decimal_comma:
            if "." in text:
                raise RateDeckError(line, f"{name} {text!r}: decimal commas were asked for, like 0,0125 (no '.')")
            text = text.replace(",", ".")
        try:
            amount = Money.parse(text)
        except MoneyError:
            hint = (
                " (a decimal comma? import with --decimal-comma)" if "," in written and not self.decimal_comma else ""
            )
            like = "0,0125" if self.decimal_comma else "0.0125"
            raise RateDeckError(line, f"{name} {written!r} is not an exact decimal amount like {like}{hint}") from None
        if amount.is_negative():
            raise RateDeckError(line, f"{name} {text!r} must not be negative")
        if len(self.amounts) < _CACHE_LIMIT:
            self.amounts[cell] = amount.micros
        return amount.micros

    @staticmethod
    def _seconds(text: str | None, name: str, line: int, low: int, default: int) -> int:
        if text is None:
            return default
        if not (text.isdigit() and text.isascii()) or not low <= int(text) <= MAX_SECONDS_FIELD:
            raise RateDeckError(line, f"{name} {text!r} must be a whole number of seconds, {low}..{MAX_SECONDS_FIELD}")
        return int(text)

    def _instant(self, cell: object, name: str, line: int) -> int | None:
        if cell is None:
            return None
        text = str(cell)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RateDeckError(
                line, f"{name} {text!r} is not an ISO 8601 date or date-time (e.g. 2026-01-01 or 2026-01-01T08:00)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        delta = moment - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

    @staticmethod
    def _weekdays(text: str, line: int) -> frozenset[int] | None:
        days: set[int] = set()
        for item in text.split(","):
            item = item.strip()
            low, dash, high = item.partition("-")
            low, high = low.strip(), high.strip()
            if dash and _is_day(low) and _is_day(high) and int(low) <= int(high):
                days.update(range(int(low), int(high) + 1))
            elif not dash and item and all(_is_day(ch) for ch in item):
                days.update(int(ch) for ch in item)
            else:
                raise RateDeckError(
                    line, f"weekdays {text!r}: use ISO days 1 (Monday) to 7 (Sunday) like 1-5, 6,7 or 12345"
                )
        return None if days == _ALL_DAYS else frozenset(days)

    @staticmethod
    def _time(cell: object, name: str, line: int, *, allow_24: bool) -> int | None:
        if cell is None:
            return None
        text = str(cell)
        hours, colon, minutes = text.partition(":")
        if (
            colon
            and len(hours) in (1, 2)
            and len(minutes) == 2
            and hours.isdigit()
            and minutes.isdigit()
            and hours.isascii()
            and minutes.isascii()
        ):
            value = int(hours) * 60 + int(minutes)
            if int(minutes) < 60 and (value < MINUTES_PER_DAY or (allow_24 and value == MINUTES_PER_DAY)):
                return value
        raise RateDeckError(
            line, f"{name} {text!r} must be a local time HH:MM (00:00-23:59{', or 24:00' if allow_24 else ''})"
        )


def _is_day(text: str) -> bool:
    return len(text) == 1 and "1" <= text <= "7"


__all__ = [
    "COLUMNS",
    "DELIMITERS",
    "ROW_FIELDS",
    "DeckRows",
    "ParsedDeck",
    "RateBuilder",
    "check_against",
    "overlaps",
    "parse_deck",
    "parse_rows",
    "sniff_delimiter",
]
