"""Resellers (issue 24, docs/RESELLERS.md): a tree of accounts and every level's hold of a call.

- account.parent_id: the account above it (NULL: a top-level account). Set once, at creation,
  never changed, so a chain read outside a transaction is the chain the call is locked along.
- call_hold: one row per live call (uuid, visit) and ancestor account of its payer: what that
  level holds and has been debited for the call at its own rate (the payer's own hold stays on
  live_call, so a one-level account's call writes no row here).
- cdr_level: one row per settled call and ancestor level: account, rate, cost, currency and the
  margin against the level below, keyed by the CDR's (uuid, visit); the CDR's columns are
  unchanged.

Depends only on 0001's `account`; each part is added only if it is not there yet.
"""

from peewee import BigIntegerField, CharField, CompositeKey, IntegerField, Model
from playhouse.migrate import migrate


def _models(db):
    class CallHold(Model):
        uuid = CharField()
        visit = IntegerField()
        account_id = IntegerField()
        depth = IntegerField()  # 0 = the top of the chain
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField()
        initial_increment_s = IntegerField()
        increment_s = IntegerField()
        min_duration_s = IntegerField()
        rounding_decimals = IntegerField()
        rounding_method = CharField()
        held_micros = BigIntegerField()
        debited_micros = BigIntegerField(default=0)

        class Meta:
            database = db
            legacy_table_names = False
            primary_key = CompositeKey("uuid", "visit", "account_id")

    class CdrLevel(Model):
        uuid = CharField()
        visit = IntegerField()
        depth = IntegerField()
        account_code = CharField()
        currency = CharField(max_length=3)
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        billed_s = IntegerField()
        cost_micros = BigIntegerField()
        charged_micros = BigIntegerField()
        uncollected_micros = BigIntegerField(default=0)
        margin_micros = BigIntegerField(null=True)  # the level below's cost minus this one's

        class Meta:
            database = db
            legacy_table_names = False
            primary_key = CompositeKey("uuid", "visit", "depth")

    return CallHold, CdrLevel


def up(migrator, db):
    have = {c.name for c in db.get_columns("account")}
    if "parent_id" not in have:
        migrate(migrator.add_column("account", "parent_id", IntegerField(null=True)))
        db.execute_sql('CREATE INDEX IF NOT EXISTS "account_parent_id" ON "account" ("parent_id")')
    db.create_tables(list(_models(db)))


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS cdr_level")
    db.execute_sql("DROP TABLE IF EXISTS call_hold")
    if "parent_id" in {c.name for c in db.get_columns("account")}:
        db.execute_sql('DROP INDEX IF EXISTS "account_parent_id"')
        migrate(migrator.drop_column("account", "parent_id"))
