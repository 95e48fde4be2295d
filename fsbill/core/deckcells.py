"""One CSV row of a rate deck to a validated stored row: the header's columns and every cell's
checks (fsbill.core.ratedeck reads the file). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from fsbill.core.deckrows import (
    COLUMNS,
    MAX_SECONDS_FIELD,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    WRITTEN_AS_IS,
    WRITTEN_INTERNATIONAL,
    WRITTEN_PLUS,
    DeckRows,
)
from fsbill.core.money import Money
from fsbill.core.rating import MAX_NUMBER_DIGITS, MINUTES_PER_DAY
from fsbill.errors import InvalidInput, MoneyError, RateDeckError

_ALL_DAYS = frozenset(range(1, 8))
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


def delimiter_name(delimiter: str) -> str:
    return _DELIMITER_NAMES.get(delimiter, repr(delimiter))


# Other names accepted for columns (fsbill's outputs put the unit last: `increment_s`).
ALIASES = {
    "initial_increment_s": "initial_increment",
    "increment_s": "increment",
    "min_duration_s": "min_duration",
}


def _header_name(raw: str) -> str:
    return raw.strip().lstrip("\ufeff").strip().lower()


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """`--columns` values ('prefix=Code,rate=Price', possibly several) as {field: header name}.

    Fields are fsbill's column names (COLUMNS, or an alias such as `increment_s`); header names
    are matched case-insensitively. A field given twice, or an unknown field, is refused.
    """
    mapping: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            if not pair.strip():
                continue
            field, equals, name = pair.partition("=")
            field = ALIASES.get(field.strip().lower(), field.strip().lower())
            if not equals or not name.strip() or not field:
                raise InvalidInput(f"--columns: expected FIELD=HEADER pairs like prefix=Code,rate=Price, got {pair!r}")
            if field not in COLUMNS:
                raise InvalidInput(f"--columns: unknown field {field!r} (fields: {','.join(COLUMNS)})")
            if field in mapping:
                raise InvalidInput(f"--columns: field {field!r} is mapped twice")
            mapping[field] = name.strip()
    headers = [_header_name(name) for name in mapping.values()]
    twice = sorted({h for h in headers if headers.count(h) > 1})
    if twice:
        raise InvalidInput(f"--columns: header {twice[0]!r} is mapped to two fields")
    return mapping


def header_names(mapping: dict[str, str] | None = None) -> dict[str, str]:
    """{lower-case header name: field}: the mapped names, then fsbill's own names (and aliases)
    of the fields the mapping leaves alone."""
    mapping = mapping or {}
    names = {_header_name(name): field for field, name in mapping.items()}
    for name in COLUMNS + tuple(ALIASES):
        field = ALIASES.get(name, name)
        if field not in mapping:
            names.setdefault(name, field)
    return names


def columns_of(
    header: list[str],
    line: int,
    delimiter: str = ",",
    mapping: dict[str, str] | None = None,
    ignore_extra: bool = False,
) -> dict[str, int]:
    """{field: position} from the header. `mapping` ({field: header name}) renames columns;
    a column that is neither mapped nor one of fsbill's names is refused, naming it, unless
    `ignore_extra`."""
    mapping = mapping or {}
    names = header_names(mapping)
    columns: dict[str, int] = {}
    extra: list[str] = []
    for position, raw in enumerate(header):
        field = names.get(_header_name(raw))
        if field is None:
            extra.append(raw.strip().lstrip("\ufeff"))
            continue
        if field in columns:
            what = f"column {raw.strip()!r}" if field in mapping else f"column {field!r}"
            raise RateDeckError(line, f"{what} appears twice")
        columns[field] = position
    absent = [f"{name!r} (for {field})" for field, name in mapping.items() if field not in columns]
    if absent:
        raise RateDeckError(line, f"mapped column {', '.join(absent)} is not in the header")
    if extra and not ignore_extra:
        shown = ", ".join(repr(name) for name in extra[:10]) + (
            f" and {len(extra) - 10} more" if len(extra) > 10 else ""
        )
        raise RateDeckError(
            line,
            f"unknown column{'s' if len(extra) > 1 else ''} {shown} (columns separated by "
            f"{delimiter_name(delimiter)}; known: {','.join(COLUMNS)}; map a column with "
            "--columns FIELD=HEADER, or skip unmapped ones with --ignore-extra)",
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise RateDeckError(
            line, f"missing required column(s) {','.join(missing)} (columns separated by {delimiter_name(delimiter)})"
        )
    return columns


_TAIL_COLUMNS = tuple(c for c in OPTIONAL_COLUMNS if c != "description")
_CACHE_LIMIT = 100_000


class RowParser:
    """Turns one CSV row into a validated Row.

    Speed matters (a million lines in seconds): a deck repeats the same few combinations of
    fee, increments, validity and band, so the validated values of those cells are
    remembered by their raw text, and only a new combination goes through the checks.
    """

    def __init__(
        self,
        columns: dict[str, int],
        zone: ZoneInfo,
        delimiter: str = ",",
        decimal_comma: bool = False,
        *,
        width: int | None = None,
        international_prefix: str = "00",
    ) -> None:
        self.width = len(columns) if width is None else width
        self.international_prefix = international_prefix
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
        written = WRITTEN_AS_IS
        intl = self.international_prefix
        if (
            not (prefix.isdigit() and prefix.isascii() and len(prefix) <= MAX_NUMBER_DIGITS)
            or intl
            and prefix.startswith(intl)
        ):
            prefix, written = self._normalised(prefix, line)
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
        deck.written.append(written)
        deck.rates.append(rate)
        deck.descriptions.append(text_id)
        deck.tail_ids.append(tail_id)
        deck.lines.append(line)

    def _normalised(self, cell: str, line: int) -> tuple[str, int]:
        """A prefix written like a dialled number ('+49', '0049'), normalised the way numbers
        are (fsbill.core.rating.normalize_number): one leading '+', or else the international
        prefix, is removed. Formatting characters are not: '49 151' or '4915-4917' is refused."""
        intl = self.international_prefix
        text, written = cell, WRITTEN_AS_IS
        if text.startswith("+"):
            text, written = text[1:], WRITTEN_PLUS
        elif intl and text.startswith(intl):
            text, written = text[len(intl) :], WRITTEN_INTERNATIONAL
        if text.isdigit() and text.isascii() and len(text) <= MAX_NUMBER_DIGITS:
            return text, written
        after = "" if intl == "" else f" or the international prefix {intl!r}"
        raise RateDeckError(
            line,
            f"prefix {cell!r} must be 1-{MAX_NUMBER_DIGITS} digits, optionally after one '+'{after} "
            "(removed, as from dialled numbers); no spaces, '-' or letters",
        )

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
    "ALIASES",
    "DELIMITERS",
    "WRITTEN_AS_IS",
    "WRITTEN_INTERNATIONAL",
    "WRITTEN_PLUS",
    "RowParser",
    "columns_of",
    "delimiter_name",
    "header_names",
    "parse_mapping",
]
