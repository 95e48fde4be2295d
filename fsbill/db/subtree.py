"""A reseller's subtree (docs/RESELLERS.md "Reseller tokens"): which accounts and tariffs lie
inside it, for the scope of a `reseller` API token, and who may be given a reseller's tariff.

A tree is at most MAX_DEPTH levels deep and a parent is set once, at creation, so walking up
from an account takes at most MAX_DEPTH primary-key reads and needs no lock.
"""

from __future__ import annotations

from fsbill.core.chain import MAX_DEPTH
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import InvalidInput


def chain_ids(store: Store, account_id: int) -> list[int]:
    """`account_id` and the ids of the accounts above it, itself first. Call inside a read."""
    m = store.models
    out = [account_id]
    row = m.Account.get_or_none(m.Account.id == account_id)
    while row is not None and row.parent_id is not None and len(out) <= MAX_DEPTH:
        out.append(int(row.parent_id))
        row = m.Account.get_or_none(m.Account.id == row.parent_id)
    return out


def contains(store: Store, top: str, code: str) -> bool:
    """Whether account `code` is `top` or lies below it (False when either does not exist)."""
    m = store.models
    with store.reading():
        root = m.Account.get_or_none(m.Account.code == top)
        row = m.Account.get_or_none(m.Account.code == code)
        return root is not None and row is not None and root.id in chain_ids(store, row.id)


def is_child(store: Store, parent: str, code: str) -> bool:
    """Whether account `code` sits directly under `parent`."""
    m = store.models
    with store.reading():
        root = m.Account.get_or_none(m.Account.code == parent)
        row = m.Account.get_or_none(m.Account.code == code)
        return root is not None and row is not None and row.parent_id == root.id


def member_ids(store: Store, top: str) -> list[int]:
    """The ids of `top` and every account below it (empty: no such account)."""
    m = store.models
    with store.reading():
        root = m.Account.get_or_none(m.Account.code == top)
        if root is None:
            return []
        found, level = [int(root.id)], [int(root.id)]
        for _ in range(MAX_DEPTH):
            level = [int(i) for (i,) in m.Account.select(m.Account.id).where(m.Account.parent_id.in_(level)).tuples()]
            if not level:
                break
            found += level
        return found


def visible_tariffs(store: Store, top: str) -> set[str]:
    """The names of the tariffs a `reseller` token for `top` may read (see `tariff_visible`)."""
    m = store.models
    ids = member_ids(store, top)
    if not ids:
        return set()
    with store.reading():
        owned = m.Tariff.select(m.Tariff.name).where(m.Tariff.owner_id.in_(ids))
        held = m.Tariff.select(m.Tariff.name).join(m.Account, on=(m.Account.tariff == m.Tariff.id))
        held = held.where(m.Account.id.in_(ids))
        return {n for (n,) in owned.tuples()} | {n for (n,) in held.tuples()}


def tariff_visible(store: Store, top: str, name: str) -> bool:
    """Whether a `reseller` token for `top` may read tariff `name`: one owned inside its subtree,
    or one an account of its subtree has (its own tariff, what it pays, among them)."""
    m = store.models
    ids = member_ids(store, top)
    with store.reading():
        t = m.Tariff.get_or_none(m.Tariff.name == name)
        if t is None or not ids:
            return False
        if t.owner_id is not None and t.owner_id in ids:
            return True
        return m.Account.select().where((m.Account.tariff == t.id) & m.Account.id.in_(ids)).exists()


def tariff_owned_within(store: Store, top: str, name: str) -> bool:
    """Whether tariff `name` belongs to `top` or to a reseller below it (so `top`'s token may
    import its deck)."""
    m = store.models
    ids = member_ids(store, top)
    with store.reading():
        t = m.Tariff.get_or_none(m.Tariff.name == name)
        return t is not None and t.owner_id is not None and t.owner_id in ids


def check_tariff_for(store: Store, tariff: DbRow, parent_id: int | None, code: str) -> None:
    """Refuse to give a reseller's tariff to an account outside that reseller's subtree: a
    tariff owned by R goes only to accounts R is above (`parent_id`: the account's parent).
    Call inside the transaction that creates or changes the account."""
    if tariff.owner_id is None:
        return
    if parent_id is None or tariff.owner_id not in chain_ids(store, parent_id):
        m = store.models
        owner = m.Account.get_or_none(m.Account.id == tariff.owner_id)
        who = "?" if owner is None else owner.code
        raise InvalidInput(
            f"tariff {tariff.name!r} belongs to reseller {who!r}: only accounts under {who!r} may have it, "
            f"and {code!r} is not under it"
        )


__all__ = [
    "chain_ids",
    "check_tariff_for",
    "contains",
    "is_child",
    "member_ids",
    "tariff_owned_within",
    "tariff_visible",
    "visible_tariffs",
]
