"""Rate decks in the database: importing a CSV file all or nothing, loading a tariff's deck into
the in-process index the call path uses, and keeping that index fresh.

Importing parses and validates the whole file before touching the database (a bad line
stores nothing), then replaces or extends the tariff's rates and bumps `Tariff.deck_version`
in one transaction. Every node checks that version before rating a call (`DeckCache`): a call
is rated from the in-process index while it is current, from the database's prefix index while
a changed deck is reloaded in the background, and never from a replaced deck.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

import gevent
import peewee

from fsbill.core.deckdiff import DEFAULT_LIMIT, DeckDiff, diff_decks
from fsbill.core.money import RoundingRule
from fsbill.core.ratedeck import (
    ROW_FIELDS,
    DeckFormat,
    DeckRows,
    ParsedDeck,
    RateBuilder,
    Row,
    check_against,
    decode_lines,
    parse_rows,
)
from fsbill.core.rating import Rate, RateDeck
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow, rounding_of
from fsbill.errors import DatabaseUnavailable, InvalidInput, NotFound
from fsbill.logs import event, render

log = logging.getLogger("fsbill.rates")

# Rows per INSERT statement: 12 bound values each, 6,000 a statement, under SQLite's 32,766
# and PostgreSQL's 65,535. Measured on SQLite: 100 rows 6.4 s, 500 rows 5.9 s per million.
BATCH_ROWS = 500
# SQLite's page cache while a big deck goes in. Dirty pages of the open transaction stay in it
# until it is full and they spill to the WAL: a bigger cache is faster but is all resident.
IMPORT_CACHE_KIB = 262_144

Progress = Callable[[str, int], None]  # (phase 'parse' | 'store', rows or lines done)


@dataclass(frozen=True)
class ImportResult:
    tariff: str
    imported: int
    replaced: bool
    deck_version: int = 0
    normalised: int = 0  # rows whose prefix was written '+49' or '0049'
    changes: DeckDiff | None = None  # a dry run's comparison; nothing was written

    @property
    def dry_run(self) -> bool:
        return self.changes is not None

    def as_json(self) -> dict:
        data: dict = {"tariff": self.tariff, "imported": self.imported, "replaced": self.replaced}
        if self.changes is not None:
            data = {
                "tariff": self.tariff,
                "dry_run": True,
                "replace": self.replaced,
                "rows": self.imported,
                "normalised": self.normalised,
                **self.changes.as_json(),
            }
        return data


def _tariff_row(store: Store, name: str) -> DbRow:
    m = store.models
    row = m.Tariff.get_or_none(m.Tariff.name == name)
    if row is None:
        raise NotFound(f"no tariff named {name!r} (create it with 'fsbill tariff add')")
    return row


Source = str | os.PathLike | BinaryIO | TextIO | Iterable[str]


def read_deck(
    source: Source, timezone: str, fmt: DeckFormat, progress: Callable[[int], None] | None = None
) -> DeckRows:
    """Parse a deck from a path, a binary stream (decoded in `fmt.encoding`, refusing the first
    undecodable line by number), or text (already decoded)."""
    options = fmt.parse_options()
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as handle:
                return parse_rows(decode_lines(handle, fmt.encoding), timezone, progress, **options)
        except OSError as exc:
            raise InvalidInput(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from None
    if isinstance(source, (io.BufferedIOBase, io.RawIOBase)):
        return parse_rows(decode_lines(source, fmt.encoding), timezone, progress, **options)
    try:
        return parse_rows(source, timezone, progress, **options)  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the deck is not {fmt.encoding} text ({exc.reason})") from None


def import_deck(
    store: Store,
    tariff_name: str,
    source: Source,
    replace: bool = False,
    progress: Progress | None = None,
    *,
    delimiter: str | None = None,
    decimal_comma: bool = False,
    allow_empty: bool = False,
    fmt: DeckFormat | None = None,
    dry_run: bool = False,
    show: int = DEFAULT_LIMIT,
) -> ImportResult:
    """Import a CSV rate deck into a tariff, all or nothing.

    `source` is a path, a binary stream (decoded in `fmt.encoding`) or an open text file.
    Without `replace` the new rows are added to the tariff's deck and must not overlap its
    existing rows; with it they replace the deck — a file without a single rate then empties
    the deck, which is refused unless `allow_empty`. `fmt` says how the file is written
    (fsbill.core.ratedeck.DeckFormat: separator, decimal comma, column mapping, encoding,
    international prefix); `delimiter` / `decimal_comma` are shorthands for a format without
    the rest. `progress(phase, done)` reports rows parsed ('parse') then rows stored ('store').

    `dry_run`: every check runs as for a real import, then the result's `changes` compares
    the stored deck with the deck the import would leave (listing at most `show` prefixes per
    kind) and nothing is written.
    """
    if fmt is None:
        fmt = DeckFormat(delimiter=delimiter, decimal_comma=decimal_comma)
    with store.reading():
        tariff = _tariff_row(store, tariff_name)
    parse_progress = (lambda n: progress("parse", n)) if progress is not None else None
    if parse_progress is not None:
        parse_progress(0)
    rows = read_deck(source, tariff.timezone, fmt, parse_progress)
    if replace and not rows and not allow_empty:
        with store.reading():
            stored = store.models.Rate.select().where(store.models.Rate.tariff == tariff.id).count()
        raise InvalidInput(
            f"the file has a header but no rates: replacing would empty the deck of tariff {tariff_name!r} "
            f"({stored} rates); pass --allow-empty to do that"
        )
    if not replace and rows:
        _check_existing(store, tariff.id, rows)
    if dry_run:
        with store.reading():
            changes = diff_decks(_stored_in_prefix_order(store, tariff.id), rows.in_prefix_order(), replace, show)
        return ImportResult(tariff_name, len(rows), replace, int(tariff.deck_version), rows.normalised(), changes)
    if progress is not None:
        progress("store", 0)
    tid = tariff.id
    # In prefix order: the (tariff, prefix) index then grows at one end instead of at random
    # pages, which is what keeps a million-row import on SQLite within seconds.
    m = store.models
    with store.transaction(alone=True) as db:
        if replace:
            m.Rate.delete().where(m.Rate.tariff == tid).execute()
        _insert_rows(store, db, tid, rows.in_prefix_order(), len(rows), progress)
        m.Tariff.update(deck_version=m.Tariff.deck_version + 1).where(m.Tariff.id == tid).execute()
        version = m.Tariff.select(m.Tariff.deck_version).where(m.Tariff.id == tid).scalar()
    event(log, "deck_imported", tariff=tariff_name, rates=len(rows), replaced=replace, version=int(version))
    return ImportResult(tariff_name, len(rows), replace, int(version), rows.normalised())


# Rows per page when a dry run reads the stored deck: pages keep its memory bounded.
DIFF_PAGE_ROWS = 20_000


def _stored_in_prefix_order(store: Store, tariff_id: int) -> Iterator[Row]:
    """A tariff's stored rows sorted by prefix in binary order (as Python sorts strings), read
    page by page (keyset on prefix and id) inside the caller's unit of work."""
    table = store.models.Rate._meta.table_name
    param = store.db.param
    prefix = 'prefix COLLATE "C"' if store.kind == "postgresql" else "prefix"
    head = f'SELECT id, {", ".join(ROW_FIELDS)} FROM "{table}" WHERE tariff_id = {param}'
    first = f"{head} ORDER BY {prefix}, id LIMIT {DIFF_PAGE_ROWS}"
    after = (
        f"{head} AND ({prefix} > {param} OR ({prefix} = {param} AND id > {param})) "
        f"ORDER BY {prefix}, id LIMIT {DIFF_PAGE_ROWS}"
    )
    page = store.db.execute_sql(first, (tariff_id,)).fetchall()
    while page:
        for row in page:
            yield tuple(row[1:])
        if len(page) < DIFF_PAGE_ROWS:
            return
        last = page[-1]
        page = store.db.execute_sql(after, (tariff_id, last[1], last[1], last[0])).fetchall()


def _insert_rows(
    store: Store, db: peewee.Database, tariff_id: int, rows: Iterable[Row], count: int, progress: Progress | None
) -> None:
    """Bulk insert inside the caller's transaction: multi-row INSERT statements on the raw
    cursor. Measured on 1,000,000 rows (SQLite): peewee's insert_many spends most of its time
    building and converting values in Python, and DB-API executemany (one statement per row)
    is about 1.6x slower than BATCH_ROWS rows per statement."""
    table = store.models.Rate._meta.table_name
    one = "(" + ", ".join([str(int(tariff_id))] + [db.param] * len(ROW_FIELDS)) + ")"
    head = f'INSERT INTO "{table}" (tariff_id, {", ".join(ROW_FIELDS)}) VALUES '
    full_sql = head + ", ".join([one] * BATCH_ROWS)
    cursor = db.cursor()
    cache_pages = None
    if store.kind == "sqlite" and count > 10 * BATCH_ROWS:
        # A bigger page cache while the rows go in (negative = KiB), then back to normal.
        cache_pages = db.execute_sql("PRAGMA cache_size").fetchone()[0]
        db.execute_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
    rows = iter(rows)
    done = 0
    try:
        for number in itertools.count():
            batch = list(itertools.islice(rows, BATCH_ROWS))
            if not batch:
                break
            sql = full_sql if len(batch) == BATCH_ROWS else head + ", ".join([one] * len(batch))
            cursor.execute(sql, [value for row in batch for value in row])
            done += len(batch)
            if progress is not None and number % 20 == 19:
                progress("store", done)
    finally:
        if cache_pages is not None:
            db.execute_sql(f"PRAGMA cache_size = {int(cache_pages)}")
    if progress is not None:
        progress("store", done)


def _check_existing(store: Store, tariff_id: int, rows: DeckRows) -> None:
    """Refuse new rows that overlap rows already in the tariff (an import without --replace)."""
    m = store.models
    with store.reading():
        stored = {
            p for (p,) in store.db.execute(m.Rate.select(m.Rate.prefix).where(m.Rate.tariff == tariff_id)).fetchall()
        }
        if not stored:
            return
        shared = stored.intersection(row[0] for row in rows)
        if not shared:
            return
        existing = [row for row in store.db.execute(_rate_query(store, tariff_id)).fetchall() if row[0] in shared]
    build = RateBuilder(RoundingRule())
    new = ParsedDeck()
    for i, row in enumerate(rows):
        if row[0] in shared:
            new.append(build(row))
            new.lines.append(rows.lines[i])
    check_against((build(row) for row in existing), new)


def _rate_query(store: Store, tariff_id: int) -> peewee.ModelSelect[DbRow]:
    m = store.models
    return m.Rate.select(*[getattr(m.Rate, f) for f in ROW_FIELDS]).where(m.Rate.tariff == tariff_id)


def _rates(store: Store, query: peewee.ModelSelect[DbRow], rounding: RoundingRule) -> list[Rate]:
    """Run a `_rate_query` (inside a unit of work) and build its rates. The raw cursor:
    peewee's per-column conversion would triple the load time of a big deck."""
    build = RateBuilder(rounding)
    return [build(row) for row in store.db.execute(query).fetchall()]


def load_deck(store: Store, tariff_id: int) -> RateDeck:
    """A tariff's whole deck as an in-process index (two queries: the tariff, its rates)."""
    deck, _ = _load(store, tariff_id)
    return deck


def _load(store: Store, tariff_id: int, cooperative: bool = False) -> tuple[RateDeck, int]:
    """Load a deck. `cooperative` yields to other greenlets every few thousand rows: building a
    big deck is seconds of CPU, which must not freeze the calls a node is enforcing."""
    m = store.models
    with store.reading():
        tariff = m.Tariff.get_or_none(m.Tariff.id == tariff_id)
        if tariff is None:
            raise NotFound(f"no tariff with id {tariff_id}")
        if not cooperative:
            rates = _rates(store, _rate_query(store, tariff_id), rounding_of(tariff))
        else:
            build = RateBuilder(rounding_of(tariff))
            cursor = store.db.execute(_rate_query(store, tariff_id))
            rates = []
            while True:
                chunk = cursor.fetchmany(_YIELD_EVERY)
                if not chunk:
                    break
                rates.extend(build(row) for row in chunk)
                gevent.sleep(0)
    source = _yielding(rates) if cooperative else rates
    return RateDeck(source, tariff.timezone), int(tariff.deck_version)


_YIELD_EVERY = 5000


def _yielding(items: list) -> Iterator:
    for i, item in enumerate(items):
        if i % _YIELD_EVERY == 0:
            gevent.sleep(0)
        yield item


class IndexedDeck:
    """A tariff's deck answered from the database's (tariff, prefix) index, one query per
    lookup: what calls are rated with while a changed deck is being reloaded into memory, so
    that no call waits for a million-row reload and none is rated from the replaced deck."""

    def __init__(self, store: Store, tariff_id: int) -> None:
        self.store = store
        self.tariff_id = tariff_id

    def lookup(self, number: str, at_us: int) -> Rate | None:
        m = self.store.models
        prefixes = [number[:n] for n in range(1, len(number) + 1)]
        with self.store.reading():
            tariff = m.Tariff.get_or_none(m.Tariff.id == self.tariff_id)
            if tariff is None:
                raise NotFound(f"no tariff with id {self.tariff_id}")
            query = _rate_query(self.store, self.tariff_id).where(m.Rate.prefix.in_(prefixes))
            rates = _rates(self.store, query, rounding_of(tariff))
        return RateDeck(rates, tariff.timezone).lookup(number, at_us)


class DeckCache:
    """Decks per tariff, rated from memory and never from a replaced deck.

    Every `get` first asks the database for the tariff's `deck_version` (one small query by
    primary key; an import bumps it in the transaction that stores the rows). The same version
    as the deck in memory: that deck. A different one (an import has committed): with
    `background=True` (what `fsbill serve` uses) the new deck is loaded by a greenlet of its
    own, on a connection of its own, yielding as it goes, and until it is complete calls are
    rated by an `IndexedDeck` (the database's prefix index, i.e. the committed rows); without
    it, the deck is reloaded there and then. `preload` loads every deck in use before the node
    accepts its first call.

    While the database is unavailable a cached deck keeps being served; the version is asked
    again only after `refresh_s` (of the caller's clock), so calls do not each wait for the
    database to time out.
    """

    def __init__(self, store: Store, refresh_s: float = 5.0, background: bool = False) -> None:
        self.store = store
        self.refresh_us = int(refresh_s * 1_000_000)
        self.background = background
        self._decks: dict[int, tuple[RateDeck, int]] = {}  # tariff id -> (deck, version)
        self._down_until_us: dict[int, int] = {}  # tariff id -> no version query before this
        self._reloads: dict[int, gevent.Greenlet] = {}
        self._version_sql: str | None = None

    def get(self, tariff_id: int, now_us: int) -> RateDeck | IndexedDeck:
        cached = self._decks.get(tariff_id)
        if cached is not None and now_us < self._down_until_us.get(tariff_id, 0):
            return cached[0]
        try:
            current = self._version(tariff_id)
        except DatabaseUnavailable:
            if cached is None:
                raise
            self._down_until_us[tariff_id] = now_us + self.refresh_us
            event(log, "deck_cached", tariff_id=tariff_id, version=cached[1], why="database unavailable")
            return cached[0]
        self._down_until_us.pop(tariff_id, None)
        if cached is not None and cached[1] == current:
            return cached[0]
        if not self.background:
            return self._reload(tariff_id) or (cached[0] if cached is not None else IndexedDeck(self.store, tariff_id))
        if tariff_id not in self._reloads:
            event(
                log,
                "deck_reload_started",
                tariff_id=tariff_id,
                version=current,
                previous=None if cached is None else cached[1],
            )
            self._reloads[tariff_id] = gevent.spawn(self._reload, tariff_id)
        return IndexedDeck(self.store, tariff_id)

    def _reload(self, tariff_id: int) -> RateDeck | None:
        started = time.perf_counter()
        try:
            if self.background:
                side = Store(self.store.url, pool_size=1)  # not the connection calls need
                try:
                    deck, version = _load(side, tariff_id, cooperative=True)
                finally:
                    side.close()
            else:
                deck, version = _load(self.store, tariff_id)
        except (DatabaseUnavailable, NotFound) as exc:
            log.warning(render("deck_reload_failed", {"tariff_id": tariff_id, "error": str(exc)}))
            return None
        finally:
            self._reloads.pop(tariff_id, None)
        cached = self._decks.get(tariff_id)
        if cached is None or cached[1] <= version:  # a slower, older reload never wins
            self._decks[tariff_id] = (deck, version)
        event(
            log,
            "deck_reloaded",
            tariff_id=tariff_id,
            version=version,
            rates=len(deck),
            seconds=round(time.perf_counter() - started, 3),
        )
        return deck

    def wait_reloads(self, timeout: float | None = None) -> None:
        gevent.joinall(list(self._reloads.values()), timeout=timeout)

    def preload(self, now_us: int) -> int:
        """Load the deck of every tariff an account uses, here and now (before the node takes
        calls); returns how many rates were loaded."""
        m = self.store.models
        with self.store.reading():
            ids = [row[0] for row in m.Account.select(m.Account.tariff).distinct().tuples()]
        total = 0
        for tariff_id in ids:
            deck, version = _load(self.store, tariff_id)
            self._decks[tariff_id] = (deck, version)
            total += len(deck)
        return total

    def _version(self, tariff_id: int) -> int:
        # Asked before every call is rated: hand-written SQL (peewee's query building costs
        # more than the indexed lookup itself).
        store = self.store
        with store.reading() as db:
            if self._version_sql is None:
                table = store.models.Tariff._meta.table_name
                self._version_sql = f'SELECT deck_version FROM "{table}" WHERE id = {db.param}'
            found = db.execute_sql(self._version_sql, (tariff_id,)).fetchone()
        version = None if found is None else found[0]
        if version is None:
            raise NotFound(f"no tariff with id {tariff_id}")
        return int(version)

    def invalidate(self, tariff_id: int | None = None) -> None:
        """Forget one tariff's deck (or all): the next `get` reloads it."""
        if tariff_id is None:
            self._decks.clear()
        else:
            self._decks.pop(tariff_id, None)


# -- for operators (CLI) --------------------------------------------------------------------------
def lookup_rate(store: Store, tariff_name: str, number: str, at_us: int) -> Rate | None:
    """The rate a call to the normalized `number` starting at `at_us` would get.

    One indexed query for the rows of every prefix of the number, not the whole deck.
    """
    m = store.models
    prefixes = [number[:n] for n in range(1, len(number) + 1)]
    with store.reading():
        tariff = _tariff_row(store, tariff_name)
        rates = _rates(store, _rate_query(store, tariff.id).where(m.Rate.prefix.in_(prefixes)), rounding_of(tariff))
    deck = RateDeck(rates, tariff.timezone)
    return deck.lookup(number, at_us)


def list_rates(
    store: Store, tariff_name: str, prefix_filter: str | None = None, limit: int | None = None
) -> list[Rate]:
    """A tariff's rates ordered by prefix; `prefix_filter` keeps prefixes starting with it."""
    m = store.models
    with store.reading():
        tariff = _tariff_row(store, tariff_name)
        query = _rate_query(store, tariff.id)
        if prefix_filter:
            query = query.where(m.Rate.prefix.startswith(prefix_filter))
        query = query.order_by(m.Rate.prefix, m.Rate.id)
        if limit:
            query = query.limit(limit)
        return _rates(store, query, rounding_of(tariff))


__all__ = [
    "DeckCache",
    "ImportResult",
    "IndexedDeck",
    "import_deck",
    "list_rates",
    "load_deck",
    "lookup_rate",
    "read_deck",
]
