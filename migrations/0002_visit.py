"""A channel can enter the socket more than once (transferred back after a top-up menu): each
visit is its own billed leg. Live calls and CDRs are keyed by (uuid, visit), visit 1 for every
row that exists already.

- live_call: new column `visit`, primary key (uuid, visit) instead of uuid;
- cdr: new column `visit`, unique (uuid, visit) instead of unique uuid.

SQLite cannot change a primary key in place: live_call is rebuilt (it only holds the calls up
right now, copied over). PostgreSQL alters both tables in place.
"""

from peewee import SqliteDatabase

LIVE_CALL_COLUMNS = (
    "uuid, account_id, node, caller, destination, prefix, rate_micros, connect_fee_micros, "
    "initial_increment_s, increment_s, min_duration_s, rounding_decimals, rounding_method, granted_s, "
    "held_micros, debited_micros, balance_before_micros, created_us, answered_us, cutoff_us, "
    "lease_until_us, hold_until_us"
)


def up(migrator, db):
    if isinstance(db, SqliteDatabase):
        _up_sqlite(db)
    else:
        _up_postgresql(db)


def _up_sqlite(db):
    db.execute_sql(
        'CREATE TABLE "live_call_v2" ('
        '"uuid" VARCHAR(255) NOT NULL, "visit" INTEGER NOT NULL DEFAULT 1, '
        '"account_id" INTEGER NOT NULL REFERENCES "account" ("id"), '
        '"node" VARCHAR(255) NOT NULL, "caller" VARCHAR(255) NOT NULL, "destination" VARCHAR(255) NOT NULL, '
        '"prefix" VARCHAR(255) NOT NULL, "rate_micros" INTEGER NOT NULL, "connect_fee_micros" INTEGER NOT NULL, '
        '"initial_increment_s" INTEGER NOT NULL, "increment_s" INTEGER NOT NULL, '
        '"min_duration_s" INTEGER NOT NULL, "rounding_decimals" INTEGER NOT NULL, '
        '"rounding_method" VARCHAR(255) NOT NULL, "granted_s" INTEGER NOT NULL, "held_micros" INTEGER NOT NULL, '
        '"debited_micros" INTEGER NOT NULL, "balance_before_micros" INTEGER NOT NULL, '
        '"created_us" INTEGER NOT NULL, "answered_us" INTEGER, "cutoff_us" INTEGER, '
        '"lease_until_us" INTEGER NOT NULL, "hold_until_us" INTEGER NOT NULL, '
        'PRIMARY KEY ("uuid", "visit"))'
    )
    db.execute_sql(
        f"INSERT INTO live_call_v2 ({LIVE_CALL_COLUMNS}, visit) SELECT {LIVE_CALL_COLUMNS}, 1 FROM live_call"
    )
    db.execute_sql("DROP TABLE live_call")
    db.execute_sql("ALTER TABLE live_call_v2 RENAME TO live_call")
    db.execute_sql('CREATE INDEX "live_call_account_id" ON "live_call" ("account_id")')
    db.execute_sql('CREATE INDEX "live_call_node" ON "live_call" ("node")')
    db.execute_sql('CREATE INDEX "live_call_lease_until_us" ON "live_call" ("lease_until_us")')
    db.execute_sql('ALTER TABLE "cdr" ADD COLUMN "visit" INTEGER NOT NULL DEFAULT 1')
    db.execute_sql('DROP INDEX "cdr_uuid"')
    db.execute_sql('CREATE UNIQUE INDEX "cdr_uuid_visit" ON "cdr" ("uuid", "visit")')


def _up_postgresql(db):
    db.execute_sql('ALTER TABLE "live_call" ADD COLUMN "visit" INTEGER NOT NULL DEFAULT 1')
    db.execute_sql('ALTER TABLE "live_call" DROP CONSTRAINT "live_call_pkey"')
    db.execute_sql('ALTER TABLE "live_call" ADD PRIMARY KEY ("uuid", "visit")')
    db.execute_sql('ALTER TABLE "cdr" ADD COLUMN "visit" INTEGER NOT NULL DEFAULT 1')
    db.execute_sql('DROP INDEX "cdr_uuid"')
    db.execute_sql('CREATE UNIQUE INDEX "cdr_uuid_visit" ON "cdr" ("uuid", "visit")')
