"""Exchange rates between the levels of a reseller tree (issue 24, docs/RESELLERS.md).

- fx_rate: one row per currency pair (source, target) set with `fsbill fx set`: 1 source =
  `rate` target, an exact decimal kept as the text the operator typed (never a float).
- cdr_level.fx_pair / cdr_level.fx_rate, after the existing columns: the rate a level's margin
  was converted at when the call settled ("RUB/USD", "0.0111"), a snapshot, so a later
  `fx set` never changes a settled margin. NULL when the level and the level below it share a
  currency, or when no rate was set (then margin_micros is NULL too).
- an index on cdr_level.account_code: `report margin --account R` and `cdr export --account R`
  read a reseller's lines by it.

Depends only on 0013's `cdr_level`; each part is added only if it is not there yet.
"""

from peewee import BigIntegerField, CharField, Model
from playhouse.migrate import migrate


def _columns():
    return (
        ("fx_pair", CharField(null=True)),
        ("fx_rate", CharField(null=True)),
    )


def up(migrator, db):
    class FxRate(Model):
        source = CharField(max_length=3)
        target = CharField(max_length=3)
        rate = CharField()  # exact decimal text: 1 source = rate target
        created_us = BigIntegerField()
        updated_us = BigIntegerField()

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("source", "target"), True),)

    db.create_tables([FxRate])
    have = {c.name for c in db.get_columns("cdr_level")}
    for name, field in _columns():
        if name not in have:
            migrate(migrator.add_column("cdr_level", name, field))
    db.execute_sql('CREATE INDEX IF NOT EXISTS "cdr_level_account_code" ON "cdr_level" ("account_code")')


def down(migrator, db):
    db.execute_sql('DROP INDEX IF EXISTS "cdr_level_account_code"')
    have = {c.name for c in db.get_columns("cdr_level")}
    for name, _ in _columns():
        if name in have:
            migrate(migrator.drop_column("cdr_level", name))
    db.execute_sql("DROP TABLE IF EXISTS fx_rate")
