"""Fraud guards (issue 21, docs/FRAUD.md): per-account settings with a default per tariff, and
the log of admitted calls the per-minute cap counts across nodes.

- tariff and account: daily_cap_micros, monthly_cap_micros (spend caps in the currency),
  block_prefixes, allow_prefixes (comma-separated digits), max_rate_micros (price per minute),
  max_calls_per_minute. NULL on an account: the tariff's default applies; on an account -1
  (numbers) or '' (lists) turns the guard off whatever the tariff says (fsbill.core.guards.OFF).
- tariff.timezone (the day and month of the caps) is added only if missing: 0001 has it.
- call_start: one row per call admitted for an account whose calls per minute are capped,
  written and counted inside the reservation's transaction (under the account's row lock),
  pruned as it goes.

Depends only on 0001's `tariff` and `account`; each column is added only if it is not there yet.
"""

from peewee import BigIntegerField, CharField, IntegerField, Model, TextField
from playhouse.migrate import migrate


def _columns():
    return (
        ("daily_cap_micros", BigIntegerField(null=True)),
        ("monthly_cap_micros", BigIntegerField(null=True)),
        ("block_prefixes", TextField(null=True)),
        ("allow_prefixes", TextField(null=True)),
        ("max_rate_micros", BigIntegerField(null=True)),
        ("max_calls_per_minute", IntegerField(null=True)),
    )


def up(migrator, db):
    have = {c.name for c in db.get_columns("tariff")}
    if "timezone" not in have:
        migrate(migrator.add_column("tariff", "timezone", CharField(default="UTC")))
    for table in ("tariff", "account"):
        have = {c.name for c in db.get_columns(table)}
        for name, field in _columns():
            if name not in have:
                migrate(migrator.add_column(table, name, field))

    class CallStart(Model):
        account_id = IntegerField()
        created_us = BigIntegerField()

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("account_id", "created_us"), False),)

    db.create_tables([CallStart])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS call_start")
    for table in ("tariff", "account"):
        have = {c.name for c in db.get_columns(table)}
        for name, _ in _columns():
            if name in have:
                migrate(migrator.drop_column(table, name))
