"""FreeSWITCH's CDR fields that fsbill captures from the channel (issue 15): `bleg_uuid` (the B
leg FreeSWITCH bridged the call to: last_bridge_to / CHANNEL_BRIDGE's Bridge-B-Unique-ID),
`accountcode` (the channel variable), `caller_id_name` and `context` (the caller profile in the
connect reply), on `cdr` and on `live_call` (so that a call settled by a reaper or adopted by
another process keeps them).

Numbered 0003 but written after 0004/0005: on a database that already applied those it runs
last (migrations apply in name order, each once), so it depends only on 0001's `cdr` and
`live_call` and adds each column only if it is not there yet.
"""

from peewee import CharField
from playhouse.migrate import migrate

COLUMNS = ("bleg_uuid", "accountcode", "caller_id_name", "context")
TABLES = ("live_call", "cdr")


def up(migrator, db):
    for table in TABLES:
        have = {c.name for c in db.get_columns(table)}
        for column in COLUMNS:
            if column not in have:
                migrate(migrator.add_column(table, column, CharField(default="")))


def down(migrator, db):
    for table in TABLES:
        have = {c.name for c in db.get_columns(table)}
        for column in COLUMNS:
            if column in have:
                migrate(migrator.drop_column(table, column))
