"""Hand-written SQL for the statements every call runs (authorize, answer, heartbeat, settle).

Profiling `fsbill serve` at saturation showed peewee assembling these queries costing more CPU
than the database executing them (about 40 % of the process). These are the same statements,
written once per database kind; the schema stays owned by fsbill.db.schema and migrations/.
Rows come back as light attribute objects with the model's field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

ACCOUNT_COLUMNS = (
    "id",
    "code",
    "tariff_id",
    "currency",
    "balance_micros",
    "credit_limit_micros",
    "reserved_micros",
    "max_channels",
    "live_channels",
    "status",
    "arrears_micros",
)
LIVE_CALL_COLUMNS = (
    "uuid",
    "visit",
    "account_id",
    "node",
    "caller",
    "destination",
    "prefix",
    "rate_micros",
    "connect_fee_micros",
    "initial_increment_s",
    "increment_s",
    "min_duration_s",
    "rounding_decimals",
    "rounding_method",
    "granted_s",
    "held_micros",
    "debited_micros",
    "balance_before_micros",
    "created_us",
    "answered_us",
    "cutoff_us",
    "lease_until_us",
    "hold_until_us",
    "instance",
    "bleg_uuid",
    "accountcode",
    "caller_id_name",
    "context",
    "did",
    "reason",
    "bundle_s",
)
CDR_COLUMNS = (
    "uuid",
    "visit",
    "account_code",
    "node",
    "caller",
    "destination",
    "prefix",
    "currency",
    "rate_micros",
    "connect_fee_micros",
    "initial_increment_s",
    "increment_s",
    "min_duration_s",
    "start_us",
    "answer_us",
    "end_us",
    "billsec",
    "billed_s",
    "cost_micros",
    "charged_micros",
    "uncollected_micros",
    "balance_before_micros",
    "balance_after_micros",
    "hangup_cause",
    "result",
    "reason",
    "created_us",
    "vendor",
    "vendor_cost_micros",
    "margin_micros",
    "bleg_uuid",
    "accountcode",
    "caller_id_name",
    "context",
    "direction",
    "did",
    "bundle_s",
)
LEDGER_COLUMNS = (
    "account_id",
    "amount_micros",
    "kind",
    "reference",
    "call_uuid",
    "balance_after_micros",
    "note",
    "created_us",
)


def _cols(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


class Statements:
    """The SQL text for one database kind (placeholders, row locks)."""

    def __init__(self, kind: str, param: str) -> None:
        p = param
        lock = " FOR UPDATE" if kind == "postgresql" else ""  # SQLite: BEGIN IMMEDIATE locks it all
        self.account_by_id = f'SELECT {_cols(ACCOUNT_COLUMNS)} FROM "account" WHERE "id" = {p}{lock}'
        self.account_by_code = f'SELECT {_cols(ACCOUNT_COLUMNS)} FROM "account" WHERE "code" = {p}{lock}'
        self.account_by_code_read = f'SELECT {_cols(ACCOUNT_COLUMNS)} FROM "account" WHERE "code" = {p}'
        qualified = ", ".join(f'a."{c}"' for c in ACCOUNT_COLUMNS)
        self.account_by_cli = (
            f'SELECT {qualified} FROM "account" a '
            f'JOIN "account_cli" c ON c."account_id" = a."id" WHERE c."number" = {p}'
        )
        leg = f'"uuid" = {p} AND "visit" = {p}'  # a call leg: one socket visit of a channel
        self.live_call = f'SELECT {_cols(LIVE_CALL_COLUMNS)} FROM "live_call" WHERE {leg}{lock}'
        self.cdr_by_leg = f'SELECT {_cols(CDR_COLUMNS)} FROM "cdr" WHERE {leg}'
        self.last_visit = (
            f'SELECT MAX("visit") FROM (SELECT "visit" FROM "live_call" WHERE "uuid" = {p} '
            f'UNION ALL SELECT "visit" FROM "cdr" WHERE "uuid" = {p}) AS visits'
        )
        self.hold = (
            f'UPDATE "account" SET "reserved_micros" = "reserved_micros" + {p}, '
            f'"live_channels" = "live_channels" + {p} WHERE "id" = {p}'
        )
        self.post = (
            f'UPDATE "account" SET "balance_micros" = "balance_micros" + {p}, '
            f'"reserved_micros" = "reserved_micros" - {p}, "updated_us" = {p} WHERE "id" = {p} '
            f'RETURNING "balance_micros"'
        )
        self.account_money = (
            f'SELECT "balance_micros", "credit_limit_micros", "reserved_micros", "arrears_micros" '
            f'FROM "account" WHERE "id" = {p}{lock}'
        )
        self.owe = f'UPDATE "account" SET "arrears_micros" = "arrears_micros" + {p} WHERE "id" = {p}'
        self.insert_ledger = (
            f'INSERT INTO "ledger_entry" ({_cols(LEDGER_COLUMNS)}) VALUES ({", ".join([p] * len(LEDGER_COLUMNS))}) '
            f'RETURNING "id"'
        )
        self.insert_live_call = (
            f'INSERT INTO "live_call" ({_cols(LIVE_CALL_COLUMNS)}) VALUES ({", ".join([p] * len(LIVE_CALL_COLUMNS))})'
        )
        self.answer = (
            f'UPDATE "live_call" SET "answered_us" = {p}, "cutoff_us" = {p}, "lease_until_us" = {p}, '
            f'"hold_until_us" = {p} WHERE {leg}'
        )
        self.beat = (
            f'UPDATE "live_call" SET "held_micros" = {p}, "debited_micros" = {p}, "granted_s" = {p}, '
            f'"lease_until_us" = {p}, "hold_until_us" = {p}, "cutoff_us" = {p} WHERE {leg}'
        )
        # the live calls to an inbound number (counted under its owner's lock: fsbill.db.calls.reserve)
        self.did_live_calls = f'SELECT COUNT(*) FROM "live_call" WHERE "did" = {p}'
        self.delete_live_call = f'DELETE FROM "live_call" WHERE {leg}'
        self.insert_cdr = f'INSERT INTO "cdr" ({_cols(CDR_COLUMNS)}) VALUES ({", ".join([p] * len(CDR_COLUMNS))})'


def row(columns: Sequence[str], values: Sequence[Any] | None) -> SimpleNamespace | None:
    return None if values is None else SimpleNamespace(**dict(zip(columns, values, strict=False)))


def one(db: Any, sql: str, params: Sequence[Any], columns: Sequence[str]) -> SimpleNamespace | None:
    return row(columns, db.execute_sql(sql, params).fetchone())


def cdr_values(**fields: Any) -> list[Any]:
    """Values in CDR_COLUMNS order, with the model's defaults for what is not given."""
    defaults = {
        "account_code": "",
        "node": "",
        "caller": "",
        "destination": "",
        "prefix": "",
        "currency": "",
        "rate_micros": 0,
        "connect_fee_micros": 0,
        "initial_increment_s": 0,
        "increment_s": 0,
        "min_duration_s": 0,
        "answer_us": None,
        "end_us": None,
        "billsec": 0,
        "billed_s": 0,
        "cost_micros": 0,
        "charged_micros": 0,
        "uncollected_micros": 0,
        "balance_before_micros": None,
        "balance_after_micros": None,
        "hangup_cause": "",
        "reason": "",
        "vendor": "",
        "vendor_cost_micros": None,
        "margin_micros": None,
        "bleg_uuid": "",
        "accountcode": "",
        "caller_id_name": "",
        "context": "",
        "direction": "outbound",
        "did": "",
        "bundle_s": 0,
        "visit": 1,
    }
    unknown = set(fields) - set(CDR_COLUMNS)
    if unknown:
        raise TypeError(f"unknown CDR fields {sorted(unknown)}")
    defaults.update(fields)
    return [defaults[c] for c in CDR_COLUMNS]
