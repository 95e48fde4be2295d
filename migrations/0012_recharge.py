"""Auto-recharge (issue 23, docs/NOTICES.md "Auto-recharge").

- account.auto_recharge_micros, auto_recharge_below_micros, auto_recharge_max_per_day: request
  that amount when what is available falls under the level, at most that many times a local day
  (all NULL: off).
- account.recharge_failures: failed charges in a row since the last credit; requests stop at
  three (fsbill.core.recharge.MAX_FAILURES) until a credit arrives.
- recharge: one row per request. `uid` is its key (rch_...), the ledger reference its credit
  carries; `status` open | credited | failed; `day` the local date it was made on (the tariff's
  time zone), which --max-per-day counts.

Depends only on 0001's `account`; columns are added only if missing.
"""

from peewee import SQL, BigIntegerField, CharField, IntegerField, Model
from playhouse.migrate import migrate

COLUMNS = (
    ("auto_recharge_micros", lambda: BigIntegerField(null=True)),
    ("auto_recharge_below_micros", lambda: BigIntegerField(null=True)),
    ("auto_recharge_max_per_day", lambda: IntegerField(null=True)),
    ("recharge_failures", lambda: IntegerField(default=0, constraints=[SQL("DEFAULT 0")])),
)


def up(migrator, db):
    have = {c.name for c in db.get_columns("account")}
    for name, field in COLUMNS:
        if name not in have:
            migrate(migrator.add_column("account", name, field()))

    class Recharge(Model):
        uid = CharField(unique=True, max_length=64)
        account_id = IntegerField()
        amount_micros = BigIntegerField()
        status = CharField(default="open")  # open | credited | failed
        day = CharField(max_length=10)
        created_us = BigIntegerField()
        closed_us = BigIntegerField(null=True)
        entry_id = IntegerField(null=True)  # the ledger entry that credited it

        class Meta:
            database = db
            legacy_table_names = False
            indexes = (
                (("account_id", "day"), False),
                (("account_id", "status"), False),
            )

    db.create_tables([Recharge])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS recharge")
    have = {c.name for c in db.get_columns("account")}
    for name, _ in COLUMNS:
        if name in have:
            migrate(migrator.drop_column("account", name))
