"""Restarts without loss (issue 13): which process holds each live call, what FreeSWITCH posted
about each channel (mod_json_cdr), and what a recovered CDR may still be corrected to.

- live_call.instance: the process (not just the node) enforcing the call; a takeover is a
  compare-and-set on it, so two processes never both adopt one call;
- switch_cdr: one row per channel uuid posted by FreeSWITCH (a second post changes nothing);
- recovery: for each leg (uuid, visit) settled without seeing the call end, the grant that was held for it
  (the most a later correction may ever charge) and the rate's rounding rule.
"""

from peewee import BigIntegerField, CharField, IntegerField, Model, TextField


def up(migrator, db):
    from playhouse.migrate import migrate

    migrate(migrator.add_column("live_call", "instance", CharField(default="")))

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class SwitchCdr(Base):
        uuid = CharField(unique=True)
        switch = CharField(default="")
        answer_us = BigIntegerField(null=True)
        end_us = BigIntegerField(null=True)
        start_us = BigIntegerField(default=0)
        billsec = IntegerField(default=0)
        hangup_cause = CharField(default="")
        destination = CharField(default="")
        received_us = BigIntegerField()
        applied = CharField(default="")  # what fsbill did with it: corrected, settled, stored
        body = TextField(default="")

    class Recovery(Base):
        uuid = CharField()  # the recovered CDR's leg (uuid, visit)
        visit = IntegerField(default=1)
        account_id = IntegerField()
        granted_s = IntegerField()
        grant_micros = BigIntegerField()  # cost(granted_s) = debited + held when it was settled
        rounding_decimals = IntegerField()
        rounding_method = CharField()
        created_us = BigIntegerField()
        corrected_us = BigIntegerField(null=True)

        class Meta:
            indexes = ((("uuid", "visit"), True),)

    db.create_tables([SwitchCdr, Recovery])


def down(migrator, db):
    for table in ("recovery", "switch_cdr"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
