"""Bundles of minutes (issue 25, docs/BUNDLES.md): seconds for some destinations, sold through a
plan, renewed each calendar period, held by live calls like money.

- bundle: a definition: `seconds` given each period, `prefixes` (comma-separated digits; '' =
  every destination), `rollover_max_s` (unused seconds carried into the next period, at most),
  `increment_s` (a call's use is rounded up to it).
- plan.bundle_id: the bundle a plan sells (NULL: none).
- account_bundle: one balance per subscription to such a plan: `seconds` left in the current
  period [period_start_us, period_end_us) (held seconds included), `held_s` held by live calls.
  UNIQUE (subscription_id). Renewed under the account's lock, so a period turns once.
- bundle_hold: what a live call holds on a balance (`position`: the order its bundle part uses
  them; `period_start_us`: the period the seconds were granted from). Deleted at settlement in
  the transaction that deletes the live call and writes its CDR: settled exactly once.
- bundle_entry: the ledger of bundle seconds: every movement of a balance (`given`, `carried`
  is informative only, `expired`, `call`), with the balance after. Σ delta_s == seconds.
- live_call.bundle_s: the seconds of the call's grant paid from bundles; cdr.bundle_s: the
  bundle seconds a call used (after the existing columns).

Depends on 0001's `live_call`, `cdr` and 0010's `plan`; columns are added only if missing.
"""

from peewee import SQL, BigIntegerField, CharField, CompositeKey, IntegerField, Model, TextField
from playhouse.migrate import migrate


def _columns():
    return (
        ("plan", "bundle_id", IntegerField(null=True)),
        ("live_call", "bundle_s", IntegerField(default=0, constraints=[SQL("DEFAULT 0")])),
        ("cdr", "bundle_s", IntegerField(default=0, constraints=[SQL("DEFAULT 0")])),
    )


def up(migrator, db):
    for table, name, field in _columns():
        have = {c.name for c in db.get_columns(table)}
        if name not in have:
            migrate(migrator.add_column(table, name, field))

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Bundle(Base):
        name = CharField(unique=True)
        seconds = BigIntegerField()
        prefixes = TextField(default="")
        rollover_max_s = BigIntegerField(default=0)
        increment_s = IntegerField(default=1)
        created_us = BigIntegerField()

    class AccountBundle(Base):
        account_id = IntegerField(index=True)
        subscription_id = IntegerField(unique=True)
        bundle_id = IntegerField()
        period_start_us = BigIntegerField()
        period_end_us = BigIntegerField()
        seconds = BigIntegerField(default=0)
        held_s = BigIntegerField(default=0)
        created_us = BigIntegerField()

    class BundleHold(Base):
        uuid = CharField()
        visit = IntegerField()
        account_bundle_id = IntegerField()
        position = IntegerField()
        held_s = BigIntegerField()
        period_start_us = BigIntegerField()

        class Meta:
            primary_key = CompositeKey("uuid", "visit", "account_bundle_id")

    class BundleEntry(Base):
        account_bundle_id = IntegerField(index=True)
        account_id = IntegerField(index=True)
        delta_s = BigIntegerField()
        kind = CharField()  # given | carried | expired | call
        period_start_us = BigIntegerField()
        call_uuid = CharField(default="")
        visit = IntegerField(default=0)
        seconds_after = BigIntegerField()
        created_us = BigIntegerField()

    db.create_tables([Bundle, AccountBundle, BundleHold, BundleEntry])


def down(migrator, db):
    for table in ("bundle_entry", "bundle_hold", "account_bundle", "bundle"):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
    for table, name, _ in _columns():
        have = {c.name for c in db.get_columns(table)}
        if name in have:
            migrate(migrator.drop_column(table, name))
