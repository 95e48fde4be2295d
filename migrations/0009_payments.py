"""Payments from gateways (issue 22, docs/PAYMENTS.md): every credit exactly once.

- payment: one row per credit a gateway made (`stripe:<payment intent>`, `paypal:<txn_id>`) and
  per PayPal refund (`paypal:<refund txn_id>`); `identity` is UNIQUE across the installation, and
  the row is written in the transaction that ledgers the money, so a redelivery, a replay or a
  race on another node finds it and adds nothing. A credit keeps what was refunded of it and
  what of that is still owed (a refund never takes what live calls hold).
- payment_notice: each notification received, by a UNIQUE `key` (`stripe-event:<event id>`,
  `paypal-ipn:<sha256 of the raw notice>`): the raw body, what fsbill made of it (credited,
  refunded, duplicate, unmatched, rejected, invalid, ignored; PayPal's `pending` until PayPal
  has verified it) and when to try verifying again.
"""

from peewee import BigIntegerField, CharField, IntegerField, Model, TextField


def up(migrator, db):
    class Payment(Model):
        identity = CharField(unique=True)
        provider = CharField()
        kind = CharField()  # credit | refund
        parent_id = IntegerField(null=True)  # a refund's credit
        account_id = IntegerField()
        currency = CharField(max_length=3)
        amount_micros = BigIntegerField()
        refunded_micros = BigIntegerField(default=0)
        owed_micros = BigIntegerField(default=0)
        reference = CharField(null=True)
        notice_id = IntegerField(null=True)
        created_us = BigIntegerField()

        class Meta:
            database = db
            legacy_table_names = False

    class PaymentNotice(Model):
        provider = CharField()
        key = CharField(unique=True)
        kind = CharField(default="")  # credit | refund | refund_total | '' (not read yet)
        status = CharField()
        identity = CharField(default="")
        parent = CharField(default="")
        account = CharField(default="")
        amount_micros = BigIntegerField(null=True)
        currency = CharField(default="")
        reference = CharField(default="")
        reason = TextField(default="")
        payment_id = IntegerField(null=True)
        body = TextField(default="")
        received_us = BigIntegerField()
        updated_us = BigIntegerField()
        attempts = IntegerField(default=0)
        next_attempt_us = BigIntegerField(null=True)

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("status", "next_attempt_us"), False),)

    db.create_tables([Payment, PaymentNotice])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS payment_notice")
    db.execute_sql("DROP TABLE IF EXISTS payment")
