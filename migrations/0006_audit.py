"""Managing what was created (issue 21): the audit trail and the attributes it manages.

- `audit_entry`: one row per changed field of an account, tariff or vendor (who, when, what,
  the old and the new value as text), written in the transaction that makes the change;
- `account.email`: a contact address ("" = none);
- `account.closed_us`: when the account was closed (status `closed`), NULL while it is open;
- `tariff.status`: `active`, or `closed` (no longer given to accounts).

Depends only on 0001's `account` and `tariff`; adds each column only if it is not there yet.
"""

from peewee import SQL, BigIntegerField, CharField, Model, TextField
from playhouse.migrate import migrate

# The defaults are in the database too (DEFAULT), not only in the models: rows inserted by plain
# SQL that names only the older columns (README's import recipe) still get them.
COLUMNS = (
    ("account", "email", lambda: CharField(default="", constraints=[SQL("DEFAULT ''")])),
    ("account", "closed_us", lambda: BigIntegerField(null=True)),
    ("tariff", "status", lambda: CharField(default="active", constraints=[SQL("DEFAULT 'active'")])),
)


def up(migrator, db):
    class AuditEntry(Model):
        created_us = BigIntegerField()
        actor = CharField()
        action = CharField()  # add | set | close | cli_add | cli_remove
        entity = CharField()  # account | tariff | vendor
        subject = CharField()  # the account's code, the tariff's or vendor's name
        field = CharField()
        old_value = TextField(null=True)
        new_value = TextField(null=True)

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("entity", "subject"), False), (("created_us",), False))

    db.create_tables([AuditEntry])
    for table, column, field in COLUMNS:
        if column not in {c.name for c in db.get_columns(table)}:
            migrate(migrator.add_column(table, column, field()))


def down(migrator, db):
    for table, column, _ in COLUMNS:
        if column in {c.name for c in db.get_columns(table)}:
            migrate(migrator.drop_column(table, column))
    db.execute_sql("DROP TABLE IF EXISTS audit_entry")
