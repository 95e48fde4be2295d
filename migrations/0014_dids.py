"""Inbound numbers (issue 25, docs/DIDS.md): the operator's numbers, who pays for calls to them,
and where they go.

- did: one row per number (ASCII digits, unique). `account_id` owns it and pays for calls *to*
  it; `dial_string` is where fsbill bridges such a call (`{destination}` is replaced by the
  number). `rate_micros` NULL means free inbound (nothing held, cost 0); otherwise the call is
  rated at rate_micros per minute, connect_fee_micros, initial_increment_s / increment_s.
  `on_empty`: reject | free (what happens when the owner cannot pay, or is suspended or closed).
  `max_channels`: concurrent calls to the number (0 = no limit). `status`: active | removed
  (a removed number keeps its row for the CDRs' sake and can be added again).
- live_call.did: the number an inbound call came in on ('' for an outbound call), so the
  concurrent calls to a number are counted across nodes; live_call.reason: why a call goes
  unbilled (free_on_empty), carried to its CDR.
- cdr.direction ('outbound' | 'inbound') and cdr.did, after the existing columns.

Depends only on 0001's `account`, `live_call` and `cdr`; columns are added only if missing.
"""

from peewee import SQL, BigIntegerField, CharField, IntegerField, Model
from playhouse.migrate import migrate


def _columns():
    # the defaults are in the database too (DEFAULT): rows inserted by plain SQL naming only the
    # older columns still go in
    return (
        ("live_call", "did", CharField(default="", constraints=[SQL("DEFAULT ''")])),
        ("live_call", "reason", CharField(default="", constraints=[SQL("DEFAULT ''")])),
        ("cdr", "direction", CharField(default="outbound", constraints=[SQL("DEFAULT 'outbound'")])),
        ("cdr", "did", CharField(default="", constraints=[SQL("DEFAULT ''")])),
    )


def up(migrator, db):
    for table, name, field in _columns():
        have = {c.name for c in db.get_columns(table)}
        if name not in have:
            migrate(migrator.add_column(table, name, field))

    class Did(Model):
        number = CharField(unique=True)
        account_id = IntegerField()
        dial_string = CharField()
        rate_micros = BigIntegerField(null=True)  # NULL: free inbound
        connect_fee_micros = BigIntegerField(default=0)
        initial_increment_s = IntegerField(default=1)
        increment_s = IntegerField(default=1)
        on_empty = CharField(default="reject")  # reject | free
        max_channels = IntegerField(default=0)  # 0 = no limit
        status = CharField(default="active")  # active | removed
        created_us = BigIntegerField()
        updated_us = BigIntegerField()

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("account_id",), False),)

    db.create_tables([Did])
    db.execute_sql('CREATE INDEX IF NOT EXISTS "live_call_did" ON "live_call" ("did")')


def down(migrator, db):
    db.execute_sql('DROP INDEX IF EXISTS "live_call_did"')
    db.execute_sql("DROP TABLE IF EXISTS did")
    for table, name, _ in _columns():
        have = {c.name for c in db.get_columns(table)}
        if name in have:
            migrate(migrator.drop_column(table, name))
