"""One CSV row of a rate deck to a validated stored row: the header's columns and every cell's
checks (fsbill.core.ratedeck reads the file). Pure."""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from fsbill.core.deckrows import COLUMNS, MAX_SECONDS_FIELD, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, DeckRows
from fsbill.core.money import Money
from fsbill.core.rating import MAX_NUMBER_DIGITS, MINUTES_PER_DAY
from fsbill.errors import MoneyError, RateDeckError

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


def columns_of(header: list[str], line: int, delimiter: str = ",") -> dict[str, int]:
    columns: dict[str, int] = {}
    for position, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff").strip().lower()
        name = ALIASES.get(name, name)
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


class RowParser:
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


__all__ = ["ALIASES", "DELIMITERS", "RowParser", "columns_of", "delimiter_name"]
