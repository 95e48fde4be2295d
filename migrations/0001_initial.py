"""Initial schema: tariffs, rates, accounts, caller ids, ledger, live calls, CDRs.

A frozen copy of the tables as they were when this migration was written; later changes go
in new migrations, never here. Money is integer micro-units; instants are epoch microseconds.
"""

from peewee import (
    BigIntegerField,
    CharField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Tariff(Base):
        name = CharField(unique=True)
        currency = CharField(max_length=3)
        rounding_decimals = IntegerField(default=4)
        rounding_method = CharField(default="half_up")
        timezone = CharField(default="UTC")
        deck_version = IntegerField(default=0)
        created_us = BigIntegerField()

    class Rate(Base):
        tariff = ForeignKeyField(Tariff, on_delete="CASCADE")
        prefix = CharField()
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField(default=0)
        initial_increment_s = IntegerField(default=1)
        increment_s = IntegerField(default=1)
        min_duration_s = IntegerField(default=0)
        description = TextField(default="")
        effective_from_us = BigIntegerField(null=True)
        effective_until_us = BigIntegerField(null=True)
        weekdays = CharField(null=True)
        time_from_min = IntegerField(null=True)
        time_to_min = IntegerField(null=True)

        class Meta:
            indexes = ((("tariff", "prefix"), False),)

    class Account(Base):
        code = CharField(unique=True)
        tariff = ForeignKeyField(Tariff)
        currency = CharField(max_length=3)
        balance_micros = BigIntegerField(default=0)
        credit_limit_micros = BigIntegerField(default=0)
        reserved_micros = BigIntegerField(default=0)
        max_channels = IntegerField(default=0)
        live_channels = IntegerField(default=0)
        status = CharField(default="active")
        created_us = BigIntegerField()
        updated_us = BigIntegerField()

    class AccountCli(Base):
        number = CharField(unique=True)
        account = ForeignKeyField(Account, on_delete="CASCADE")

    class LedgerEntry(Base):
        account = ForeignKeyField(Account)
        amount_micros = BigIntegerField()
        kind = CharField()
        reference = CharField(null=True)
        call_uuid = CharField(null=True, index=True)
        balance_after_micros = BigIntegerField()
        note = TextField(default="")
        created_us = BigIntegerField()

        class Meta:
            indexes = ((("account", "reference"), True), (("account", "created_us"), False))

    class LiveCall(Base):
        uuid = CharField(primary_key=True)
        account = ForeignKeyField(Account)
        node = CharField(index=True)
        caller = CharField(default="")
        destination = CharField(default="")
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField()
        initial_increment_s = IntegerField()
        increment_s = IntegerField()
        min_duration_s = IntegerField()
        rounding_decimals = IntegerField()
        rounding_method = CharField()
        granted_s = IntegerField()
        held_micros = BigIntegerField()
        debited_micros = BigIntegerField(default=0)
        balance_before_micros = BigIntegerField(default=0)
        created_us = BigIntegerField()
        answered_us = BigIntegerField(null=True)
        cutoff_us = BigIntegerField(null=True)
        lease_until_us = BigIntegerField(index=True)
        hold_until_us = BigIntegerField()

    class Cdr(Base):
        uuid = CharField(unique=True)
        account_code = CharField(default="", index=True)
        node = CharField(default="")
        caller = CharField(default="")
        destination = CharField(default="")
        prefix = CharField(default="")
        currency = CharField(default="")
        rate_micros = BigIntegerField(default=0)
        connect_fee_micros = BigIntegerField(default=0)
        initial_increment_s = IntegerField(default=0)
        increment_s = IntegerField(default=0)
        min_duration_s = IntegerField(default=0)
        start_us = BigIntegerField(index=True)
        answer_us = BigIntegerField(null=True)
        end_us = BigIntegerField(null=True)
        billsec = IntegerField(default=0)
        billed_s = IntegerField(default=0)
        cost_micros = BigIntegerField(default=0)
        charged_micros = BigIntegerField(default=0)
        uncollected_micros = BigIntegerField(default=0)
        balance_before_micros = BigIntegerField(null=True)
        balance_after_micros = BigIntegerField(null=True)
        hangup_cause = CharField(default="")
        result = CharField()
        reason = CharField(default="")
        created_us = BigIntegerField()

    db.create_tables([Tariff, Rate, Account, AccountCli, LedgerEntry, LiveCall, Cdr])


def down(migrator, db):
    for table in ("cdr", "live_call", "ledger_entry", "account_cli", "account", "rate", "tariff"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
