"""Vendors (carriers) and what the call path records about them (issue 16).

- `vendor`: a carrier fsbill can route to. Its cost deck is an ordinary tariff's deck
  (`deck_id`, a tariff named `vendor:NAME`), so vendor decks use the same CSV format, import
  rules and in-memory index as customer decks. `live_channels` counts the live calls holding a
  channel on it, maintained like `account.live_channels`.
- `live_call_vendor`: which vendors a live call holds a channel on (every vendor in its
  failover bridge until the bridge picks one), so that the channels are released exactly once
  by whichever node or reaper settles the call.
- `vendor_attempt`: one row per vendor a call was really offered to, and how that ended.
- `cdr.vendor`, `cdr.vendor_cost_micros`, `cdr.margin_micros`: the carrying vendor, what it
  charges for the billed window, and cost - vendor_cost.

Applies after 0002/0003 (name order) and depends only on 0001's tables.
"""

from peewee import BigIntegerField, CharField, ForeignKeyField, IntegerField, Model
from playhouse.migrate import migrate


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Tariff(Base):
        class Meta:
            table_name = "tariff"

    class Vendor(Base):
        name = CharField(unique=True)
        deck = ForeignKeyField(Tariff, column_name="deck_id")
        dial_string = CharField(max_length=1024)
        max_channels = IntegerField(default=0)
        live_channels = IntegerField(default=0)
        weight = IntegerField(default=0)
        status = CharField(default="active")
        created_us = BigIntegerField()

    class LiveCallVendor(Base):
        call_uuid = CharField(index=True)
        visit = IntegerField(default=1)  # the call's socket visit (migrations/0002)
        vendor = ForeignKeyField(Vendor, column_name="vendor_id")
        position = IntegerField()
        leg_uuid = CharField()
        answered = IntegerField(default=0)  # 0 holding a channel, 1 the leg FreeSWITCH bridged, -1 released
        # the vendor's rate for the call, frozen at authorization like the customer's
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField()
        initial_increment_s = IntegerField()
        increment_s = IntegerField()
        min_duration_s = IntegerField()
        rounding_decimals = IntegerField()
        rounding_method = CharField()

    class VendorAttempt(Base):
        call_uuid = CharField(index=True)
        visit = IntegerField(default=1)
        vendor = CharField()
        position = IntegerField()
        result = CharField()  # answered | failed
        cause = CharField(default="")
        start_us = BigIntegerField()

        class Meta:
            indexes = ((("vendor", "start_us"), False), (("call_uuid", "visit", "position"), True))

    db.create_tables([Vendor, LiveCallVendor, VendorAttempt])
    migrate(
        migrator.add_column("cdr", "vendor", CharField(default="")),
        migrator.add_column("cdr", "vendor_cost_micros", BigIntegerField(null=True)),
        migrator.add_column("cdr", "margin_micros", BigIntegerField(null=True)),
    )


def down(migrator, db):
    migrate(
        migrator.drop_column("cdr", "margin_micros"),
        migrator.drop_column("cdr", "vendor_cost_micros"),
        migrator.drop_column("cdr", "vendor"),
    )
    for table in ("vendor_attempt", "live_call_vendor", "vendor"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
