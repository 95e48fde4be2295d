"""Notices (issue 23, docs/NOTICES.md): the outbox and the low-balance levels.

- tariff.low_balance, account.low_balance: the low-balance levels, comma-separated exact amounts
  in the currency ("10.00,2.00"). On a tariff, the default of its accounts; on an account, NULL
  means the tariff's default applies and '' means no level at all (off), whatever the tariff says.
- low_balance_state: one row per (account, level) that is *disarmed*: a `balance.low` notice was
  raised when what is available fell under the level, and the next one for that level waits
  until it is back at the level plus 10 % (fsbill.core.notices). No row: the level is armed.
- notice: the outbox. One row per notice, written in the transaction of its cause; `uid` is the
  stable id receivers drop duplicates by (the `webhook-id` header), `id` the order of writing. Each channel (webhook,
  email) is `pending`, `sent` or `none` (nothing to send it to); the notice is `delivered` once
  no channel is pending. A deliverer claims a row by setting claimed_by / claimed_until_us (a
  lease); a failed attempt counts in `attempts`, keeps `last_error` and waits until
  `next_attempt_us`.

Depends only on 0001's `tariff` and `account`; columns are added only if missing.
"""

from peewee import BigIntegerField, CharField, IntegerField, Model, TextField
from playhouse.migrate import migrate


def up(migrator, db):
    for table in ("tariff", "account"):
        have = {c.name for c in db.get_columns(table)}
        if "low_balance" not in have:
            migrate(migrator.add_column(table, "low_balance", TextField(null=True)))

    class LowBalanceState(Model):
        account_id = IntegerField()
        level_micros = BigIntegerField()
        created_us = BigIntegerField()

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("account_id", "level_micros"), True),)

    class Notice(Model):
        uid = CharField(unique=True, max_length=64)  # the stable id receivers see (webhook-id)
        kind = CharField(max_length=64)
        account_code = CharField(default="")
        payload = TextField()
        created_us = BigIntegerField()
        status = CharField(default="pending")  # pending | delivered
        webhook_status = CharField(default="pending")  # pending | sent | none
        email_status = CharField(default="pending")  # pending | sent | none
        attempts = IntegerField(default=0)
        next_attempt_us = BigIntegerField()
        claimed_by = CharField(default="")
        claimed_until_us = BigIntegerField(default=0)
        last_error = TextField(default="")
        delivered_us = BigIntegerField(null=True)

        class Meta:
            database = db
            legacy_table_names = False
            indexes = (
                (("status", "next_attempt_us"), False),
                (("account_code", "created_us"), False),
            )

    db.create_tables([LowBalanceState, Notice])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS notice")
    db.execute_sql("DROP TABLE IF EXISTS low_balance_state")
    for table in ("tariff", "account"):
        have = {c.name for c in db.get_columns(table)}
        if "low_balance" in have:
            migrate(migrator.drop_column(table, "low_balance"))
