"""Recurring charges (issue 23, docs/PLANS.md): plans, subscriptions, the charges posted for
them, arrears, and leases.

- `plan`: a recurring fee (a DID rental, a PBX seat, a trunk): name, fee per month, period
  (`monthly` | `daily`), currency.
- `subscription`: an account's subscription to a plan, with a quantity, from `start_us` until
  `end_us` (NULL: until unsubscribed); `done_us` once nothing more can fall due for it.
- `charge`: one row per charge (kind `charge`) or credit (kind `credit`) of a subscription's
  period, written in the transaction of its ledger entry. UNIQUE (subscription_id,
  period_start_us, kind): each period is charged at most once and credited at most once,
  however many nodes run `charges run` and however often it crashes.
- `account.arrears_micros`: what charges could not take without touching money live calls
  hold; counted against what is available until paid.
- `lease`: named leases a node holds for a while ("one node at a time"): `charges` for the
  periodic run inside `fsbill serve`.

Depends only on 0001's `account`; the column is added only if it is not there yet.
"""

from peewee import SQL, BigIntegerField, CharField, IntegerField, Model
from playhouse.migrate import migrate


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Plan(Base):
        name = CharField(unique=True)
        fee_micros = BigIntegerField()
        period = CharField()  # monthly | daily
        currency = CharField(max_length=3)
        created_us = BigIntegerField()

    class Subscription(Base):
        account_id = IntegerField(constraints=[SQL('REFERENCES "account" ("id")')])
        plan_id = IntegerField(constraints=[SQL('REFERENCES "plan" ("id")')])
        quantity = IntegerField(default=1)
        start_us = BigIntegerField()
        end_us = BigIntegerField(null=True)
        created_us = BigIntegerField()
        done_us = BigIntegerField(null=True)

        class Meta:
            indexes = ((("account_id", "plan_id"), False), (("done_us",), False))

    class Charge(Base):
        subscription_id = IntegerField(constraints=[SQL('REFERENCES "subscription" ("id")')])
        account_id = IntegerField()
        period_start_us = BigIntegerField()
        kind = CharField()  # charge | credit
        from_us = BigIntegerField()
        until_us = BigIntegerField()
        amount_micros = BigIntegerField()  # the charge or the credit (positive)
        taken_micros = BigIntegerField()  # moved off (charge) or onto (credit) the balance
        arrears_micros = BigIntegerField(default=0)  # what the charge owed instead of taking
        created_us = BigIntegerField()
        node = CharField(default="")

        class Meta:
            indexes = ((("subscription_id", "period_start_us", "kind"), True), (("account_id", "created_us"), False))

    class Lease(Base):
        name = CharField(primary_key=True)
        holder = CharField(default="")
        until_us = BigIntegerField(default=0)

    for model in (Plan, Subscription, Charge, Lease):  # in order: the references are plain SQL
        db.create_tables([model])
    if "arrears_micros" not in {c.name for c in db.get_columns("account")}:
        migrate(
            migrator.add_column("account", "arrears_micros", BigIntegerField(default=0, constraints=[SQL("DEFAULT 0")]))
        )
    db.execute_sql("INSERT INTO lease (name, holder, until_us) VALUES ('charges', '', 0)")


def down(migrator, db):
    if "arrears_micros" in {c.name for c in db.get_columns("account")}:
        migrate(migrator.drop_column("account", "arrears_micros"))
    for table in ("lease", "charge", "subscription", "plan"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
