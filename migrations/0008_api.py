"""The HTTP API (issue 22, docs/API.md): its bearer tokens and its idempotency records.

- `api_token`: one row per token `fsbill api token add` made: its name (the audit trail's
  actor), role (admin | readonly | account), the account an `account` token is scoped to, the
  SHA-256 of the token (the token itself is shown once and never stored), when it was made and
  when it was revoked (NULL while it is valid). Names stay taken after a revocation, so the
  audit trail's actor names one token for good.
- `api_idempotency`: one row per `Idempotency-Key` a money-moving request used, unique per
  installation: the fingerprint of the request (method, path, body), the token that sent it,
  and the response (status and body) written in the transaction that moved the money, so a
  replay returns it and changes nothing.

New tables only; depends on nothing else.
"""

from peewee import BigIntegerField, CharField, IntegerField, Model, TextField


def up(migrator, db):
    class ApiToken(Model):
        name = CharField(max_length=64, unique=True)
        role = CharField(max_length=16)
        account_code = CharField(max_length=64, null=True)
        token_sha256 = CharField(max_length=64, unique=True)
        created_us = BigIntegerField()
        revoked_us = BigIntegerField(null=True)

        class Meta:
            database = db
            legacy_table_names = False

    class ApiIdempotency(Model):
        key = CharField(max_length=255, unique=True)
        fingerprint = CharField(max_length=64)
        token_name = CharField(max_length=64)
        status = IntegerField()
        body = TextField()
        created_us = BigIntegerField()

        class Meta:
            database = db
            legacy_table_names = False

    db.create_tables([ApiToken, ApiIdempotency])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS api_idempotency")
    db.execute_sql("DROP TABLE IF EXISTS api_token")
