"""Reseller API tokens (issue 24, docs/RESELLERS.md "Reseller tokens"): who owns a tariff.

- tariff.owner_id: the reseller account that made the tariff (through its `reseller` API token,
  or `tariff add --owner`); NULL: the operator's. A tariff owned by R is seen and given only
  inside R's subtree: an account may take it only if R is above it.

Depends only on 0001's `tariff`; the column is added only if it is not there yet.
"""

from peewee import IntegerField
from playhouse.migrate import migrate


def up(migrator, db):
    if "owner_id" not in {c.name for c in db.get_columns("tariff")}:
        migrate(migrator.add_column("tariff", "owner_id", IntegerField(null=True)))
    db.execute_sql('CREATE INDEX IF NOT EXISTS "tariff_owner_id" ON "tariff" ("owner_id")')


def down(migrator, db):
    if "owner_id" in {c.name for c in db.get_columns("tariff")}:
        db.execute_sql('DROP INDEX IF EXISTS "tariff_owner_id"')
        migrate(migrator.drop_column("tariff", "owner_id"))
