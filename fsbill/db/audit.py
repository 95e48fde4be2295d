"""The audit trail: who changed which attribute of an account, a tariff or a vendor, when, from
what to what.

Every management change (`account set|close|cli`, `tariff set|close`, `vendor set|close`, the
`add`s and the status changes) writes its rows here with `record()` inside the transaction that
makes the change, so the trail and the books never disagree: a change that rolls back leaves no
row, and no change commits without its rows. Money movements are recorded by the ledger
(`fsbill ledger`); those made through the HTTP API are also here, with the token's name as
the actor (fsbill.api.accounts), and so are the API's tokens (`api token add|revoke`).

Values are kept as text, as an operator would type them (amounts as exact decimal strings); NULL
means "no value" (before an `add`, after a `close` of an attribute that no longer applies).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import InvalidInput
from fsbill.instant import iso

ENTITIES = ("account", "tariff", "vendor", "api_token", "plan", "did", "bundle", "fx")


@dataclass(frozen=True)
class Change:
    """One attribute changed (old and new as text; None when there is none)."""

    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class AuditView:
    id: int
    created_us: int
    actor: str
    action: str
    entity: str
    subject: str
    field: str
    old: str | None
    new: str | None

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "time": iso(self.created_us),
            "actor": self.actor,
            "action": self.action,
            "entity": self.entity,
            "name": self.subject,
            "field": self.field,
            "old": self.old,
            "new": self.new,
        }


def record(
    store: Store, actor: str, now_us: int, action: str, entity: str, subject: str, changes: Iterable[Change]
) -> None:
    """Write one row per change; call inside the `store.transaction()` that makes them."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown audited entity {entity!r}")
    rows = [
        {
            "created_us": now_us,
            "actor": actor,
            "action": action,
            "entity": entity,
            "subject": subject,
            "field": c.field,
            "old_value": c.old,
            "new_value": c.new,
        }
        for c in changes
    ]
    if rows:
        store.models.AuditEntry.insert_many(rows).execute()


def parse_entity(text: str) -> tuple[str, str | None]:
    """`account`, `account:1001` -> (entity, subject or None)."""
    entity, _, subject = text.partition(":")
    if entity not in ENTITIES:
        raise InvalidInput(f"--entity must be one of {', '.join(ENTITIES)}, optionally with ':NAME', got {text!r}")
    return entity, (subject or None)


def entries(
    store: Store, entity: str | None = None, subject: str | None = None, limit: int | None = None
) -> list[AuditView]:
    """The trail, latest first."""
    m = store.models
    with store.reading():
        q = m.AuditEntry.select()
        if entity is not None:
            q = q.where(m.AuditEntry.entity == entity)
        if subject is not None:
            q = q.where(m.AuditEntry.subject == subject)
        q = q.order_by(m.AuditEntry.id.desc())
        if limit:
            q = q.limit(limit)
        return [_view(r) for r in q]


def _view(row: DbRow) -> AuditView:
    return AuditView(
        id=row.id,
        created_us=row.created_us,
        actor=row.actor,
        action=row.action,
        entity=row.entity,
        subject=row.subject,
        field=row.field,
        old=row.old_value,
        new=row.new_value,
    )
