"""CDRs read for export in pages, so `fsbill cdr export` streams millions of them in bounded
memory and never holds the database (or the SQLite connection every call shares) for the whole
export: each page is its own short read, continuing after the last row of the previous page
(keyset pagination on the export order, start then id)."""

from __future__ import annotations

from collections.abc import Iterator

from fsbill.db.chain import at_level, of_account
from fsbill.db.connection import Store
from fsbill.db.views import CdrView, _cdr_view, cdr_query

PAGE_ROWS = 5000


def iter_cdrs(
    store: Store,
    *,
    account: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    page_rows: int = PAGE_ROWS,
) -> Iterator[CdrView]:
    """The same rows, in the same order, as `fsbill.db.views.cdrs`, a page at a time."""
    after: tuple[int, int] | None = None
    while True:
        rows, after = cdr_page(
            store, account=account, since_us=since_us, until_us=until_us, after=after, limit=page_rows
        )
        yield from rows
        if after is None:
            return


def cdr_page(
    store: Store,
    *,
    account: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    after: tuple[int, int] | None = None,
    limit: int = PAGE_ROWS,
) -> tuple[list[CdrView], tuple[int, int] | None]:
    """One page of CDRs in export order (start, then id), continuing after `after`, in one short
    read; returns the page and where the next one starts (None: this was the last page)."""
    m = store.models
    with store.reading():
        q = cdr_query(store, None, since_us, until_us)
        if account:
            q = q.where(of_account(store, account))  # a reseller's: its subtree's calls too
        if after is not None:
            start, row_id = after
            q = q.where((m.Cdr.start_us > start) | ((m.Cdr.start_us == start) & (m.Cdr.id > row_id)))
        rows = list(q.order_by(m.Cdr.start_us, m.Cdr.id).limit(limit))
    following = (rows[-1].start_us, rows[-1].id) if len(rows) == limit else None
    views = [_cdr_view(row) for row in rows]
    if account is not None and any(v.account != account for v in views):
        views = at_level(store, views, account)  # a reseller's subtree, at its own cost
    return views, following


__all__ = ["PAGE_ROWS", "cdr_page", "iter_cdrs"]
