"""Which rows of a deck could apply at the same moment: duplicates inside a file, and new rows
against the rows already in a tariff. Every refusal is a RateDeckError naming the line. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from fsbill.core.deckrows import DeckRows, RateBuilder, prefix_order
from fsbill.core.money import RoundingRule
from fsbill.core.rating import MINUTES_PER_DAY, Rate
from fsbill.errors import RateDeckError

_ALL_DAYS = frozenset(range(1, 8))


def duplicate_groups(deck: DeckRows) -> list[list[int]]:
    """Row indices sharing a prefix, in file order; groups ordered by where their first
    repeat is in the file (so the error names the earliest bad line)."""
    prefixes = deck.prefixes
    order = deck.order if deck.order is not None else prefix_order(prefixes)
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


def check_duplicates(deck: DeckRows, groups: list[list[int]]) -> None:
    build = RateBuilder(RoundingRule())
    for group in groups:
        rates = {i: build(deck[i]) for i in group}
        for j_pos in range(1, len(group)):
            j = group[j_pos]
            for i in group[:j_pos]:
                if overlaps(rates[i], rates[j]):
                    written_i, written_j = deck.written_prefix(i), deck.written_prefix(j)
                    if written_i == written_j:
                        what = f"prefix {rates[j].prefix} duplicates line {deck.lines[i]}"
                    else:  # one of them normalised ('+49' or '0049' is stored as '49')
                        what = (
                            f"prefix {written_j!r} (normalised to {rates[j].prefix}) duplicates line "
                            f"{deck.lines[i]} ({written_i!r}, normalised to {rates[i].prefix})"
                        )
                    raise RateDeckError(deck.lines[j], f"{what} (validity windows and time bands overlap)")


__all__ = ["check_against", "check_duplicates", "duplicate_groups", "overlaps"]
