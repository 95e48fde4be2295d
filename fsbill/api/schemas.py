"""JSON schemas of what the API takes and gives (OpenAPI 3.1 `components.schemas`).

The shapes are the CLI's `--json` shapes (fsbill.db.ledger.AccountView.as_json, LedgerView,
fsbill.cdr_format.record and live_record, `tariff list`, `rates lookup|list`, VendorView): same
names, amounts as exact decimal strings, instants as ISO 8601 UTC strings.
"""

from __future__ import annotations

from typing import Any

from fsbill.api import problems

AMOUNT_PATTERN = r"^[+-]?[0-9]{1,15}(\.[0-9]{1,6})?$"
POSITIVE_PATTERN = r"^\+?[0-9]{1,15}(\.[0-9]{1,6})?$"
CODE_PATTERN = r"^[^\s]{1,64}$"


def _s(kind: str, nullable: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"] if nullable else kind, **extra}


AMOUNT = _s("string", pattern=AMOUNT_PATTERN, description="exact decimal amount, e.g. 10.50")
AMOUNT_OR_NULL = _s("string", nullable=True, pattern=AMOUNT_PATTERN)
INSTANT = _s("string", description="ISO 8601 UTC, e.g. 2026-12-01T10:00:00.250000Z")
INSTANT_OR_NULL = _s("string", nullable=True)
COUNT = _s("integer", minimum=0)


def _object(props: dict[str, Any], required: list[str] | None = None, closed: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }
    if closed:
        out["additionalProperties"] = False
    return out


def _list(item: str, paged: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}}}
    if paged:
        props["next_cursor"] = _s(
            "string", nullable=True, description="pass as `cursor` for the next page; null: last page"
        )
    return _object(props)


ACCOUNT = _object(
    {
        "code": _s("string"),
        "tariff": _s("string"),
        "currency": _s("string"),
        "status": _s("string", enum=["active", "suspended", "closed"]),
        "balance": AMOUNT,
        "credit_limit": AMOUNT,
        "reserved": AMOUNT,
        "available": AMOUNT,
        "arrears": AMOUNT,  # recurring charges not yet paid (docs/PLANS.md)
        "max_channels": COUNT,
        "live_calls": COUNT,
        "clis": {"type": "array", "items": {"type": "string"}},
        "email": _s("string"),
    }
)
CHANGE = _object({"field": _s("string"), "old": _s("string", nullable=True), "new": _s("string", nullable=True)})
CHANGES = {"type": "array", "items": {"$ref": "#/components/schemas/Change"}}
LEDGER_ENTRY = _object(
    {
        "id": _s("integer"),
        "account": _s("string"),
        "amount": AMOUNT,
        "kind": _s("string"),
        "reference": _s("string", nullable=True),
        "call_uuid": _s("string", nullable=True),
        "balance_after": AMOUNT,
        "note": _s("string"),
        "time": INSTANT,
    }
)
MOVEMENT = {
    "allOf": [
        {"$ref": "#/components/schemas/LedgerEntry"},
        _object({"applied": _s("boolean", description="false: its reference was already applied; nothing moved")}),
    ]
}
AUTO_RECHARGE = _object(
    {
        "amount": _s("string", pattern=POSITIVE_PATTERN, description="requested when available falls under below"),
        "below": _s("string", pattern=POSITIVE_PATTERN, description="the level of available"),
        "max_per_day": _s("integer", minimum=1, maximum=100, description="requests a local day (default 3)"),
    },
    required=["amount", "below"],
    closed=True,
)
AUTO_RECHARGE_OR_NULL = AUTO_RECHARGE | {
    "type": ["object", "null"],
    "description": 'auto-recharge settings (docs/NOTICES.md "Auto-recharge"); null: off',
}
RECHARGE = _object(
    {
        "key": _s("string", description="the reference its credit carries"),
        "account": _s("string"),
        "amount": AMOUNT,
        "currency": _s("string"),
        "status": _s("string", enum=["open", "credited", "failed"]),
        "day": _s("string", description="local date it was made on (the tariff's time zone)"),
        "time": INSTANT,
        "closed": INSTANT_OR_NULL,
        "entry": _s("integer", nullable=True, description="the ledger entry that credited it"),
    }
)
RECHARGE_FAILED = {
    "allOf": [
        {"$ref": "#/components/schemas/Recharge"},
        _object(
            {
                "failures": _s("integer", minimum=0, description="failed charges in a row"),
                "stopped": _s("boolean", description="three in a row: no request until a credit arrives"),
                "changed": _s("boolean", description="false: it was already reported failed"),
            }
        ),
    ]
}
GUARD_FIELDS = ("daily_cap", "monthly_cap", "block", "allow", "max_rate", "max_calls_per_minute")
ACCOUNT_GUARDS = _object(
    {
        "account": _s("string"),
        **{name: {} for name in GUARD_FIELDS},
        "from": {"type": "object"},
        "timezone": _s("string"),
        "spent_today": AMOUNT,
        "spent_this_month": AMOUNT,
        "calls_last_minute": COUNT,
        "changes": CHANGES,
    }
)
GUARDS = {"type": "object", "description": "fraud guards in force and usage (`account show --json`'s guards)"}
ACCOUNT_DETAIL = {
    "allOf": [
        {"$ref": "#/components/schemas/Account"},
        _object(
            {
                "low_balance": {"type": "array", "items": _s("string"), "description": "low-balance levels in force"},
                "low_balance_from": {"type": ["string", "null"], "description": "account | tariff | null (none)"},
                "auto_recharge": AUTO_RECHARGE_OR_NULL,
                "recharge_failures": _s("integer", minimum=0, description="failed charges in a row"),
                "guards": GUARDS,
            }
        ),
    ],
}
ACCOUNT_CHANGED = {
    "allOf": [{"$ref": "#/components/schemas/Account"}, _object({"changes": CHANGES})],
}
ACCOUNT_CLOSED = {
    "allOf": [
        {"$ref": "#/components/schemas/Account"},
        _object(
            {
                "changes": CHANGES,
                "entry": {"oneOf": [{"$ref": "#/components/schemas/LedgerEntry"}, {"type": "null"}]},
            }
        ),
    ]
}

_CDR_STRINGS = ("uuid", "start_stamp", "result")
_CDR_INTS = (
    "start_epoch",
    "answer_epoch",
    "end_epoch",
    "start_uepoch",
    "answer_uepoch",
    "end_uepoch",
    "billsec",
    "billed_s",
    "bundle_s",  # bundle seconds used (docs/BUNDLES.md)
)
_CDR_AMOUNTS = ("cost", "charged", "uncollected")
_CDR_OPTIONAL_AMOUNTS = (
    "rate",
    "connect_fee",
    "balance_when_authorized",
    "balance_after_settlement",
    "vendor_cost",
    "margin",
)
_CDR_OPTIONAL_INTS = ("duration", "hangup_cause_q850", "visit", "initial_increment_s", "increment_s", "min_duration_s")


def _cdr() -> dict[str, Any]:
    from fsbill.cdr_format import FIELDS

    props: dict[str, Any] = {}
    for name in FIELDS:
        if name in _CDR_STRINGS:
            props[name] = _s("string")
        elif name in _CDR_INTS:
            props[name] = _s("integer")
        elif name in _CDR_AMOUNTS:
            props[name] = AMOUNT
        elif name in _CDR_OPTIONAL_AMOUNTS:
            props[name] = AMOUNT_OR_NULL
        elif name in _CDR_OPTIONAL_INTS:
            props[name] = _s("integer", nullable=True)
        else:
            props[name] = _s("string", nullable=True)
    return _object(props)


LIVE_CALL = _object(
    {
        "uuid": _s("string"),
        "visit": _s("integer", nullable=True),
        "account": _s("string", nullable=True),
        "node": _s("string", nullable=True),
        "caller_id_number": _s("string", nullable=True),
        "destination_number": _s("string", nullable=True),
        "prefix": _s("string", nullable=True),
        "rate": AMOUNT,
        "granted_s": _s("integer"),
        "held": AMOUNT,
        "debited": AMOUNT,
        "start_stamp": INSTANT,
        "answer_stamp": INSTANT_OR_NULL,
        "cutoff_stamp": INSTANT_OR_NULL,
        "lease_until_stamp": INSTANT,
    }
)
TARIFF = _object(
    {
        "name": _s("string"),
        "currency": _s("string"),
        "decimals": _s("integer"),
        "rounding": _s("string"),
        "timezone": _s("string"),
        "rates": COUNT,
        "status": _s("string", enum=["active", "closed"]),
        "owner": _s("string", nullable=True, description="the reseller it belongs to; null: the operator's"),
    }
)
RATE = _object(
    {
        "prefix": _s("string"),
        "rate": AMOUNT,
        "connect_fee": AMOUNT,
        "initial_increment_s": _s("integer"),
        "increment_s": _s("integer"),
        "min_duration_s": _s("integer"),
        "description": _s("string"),
        "effective_from": INSTANT_OR_NULL,
        "effective_until": INSTANT_OR_NULL,
        "band": _s("string", nullable=True),
    }
)
RATE_LOOKUP = {"allOf": [_object({"number": _s("string")}), {"$ref": "#/components/schemas/Rate"}]}
VENDOR = _object(
    {
        "name": _s("string"),
        "dial_string": _s("string"),
        "currency": _s("string"),
        "decimals": _s("integer"),
        "rounding": _s("string"),
        "timezone": _s("string"),
        "max_channels": COUNT,
        "live_channels": COUNT,
        "weight": _s("integer"),
        "status": _s("string", enum=["active", "suspended", "closed"]),
        "rates": COUNT,
    }
)

# -- request bodies --------------------------------------------------------------------------------
NEW_ACCOUNT = _object(
    {
        "code": _s("string", pattern=CODE_PATTERN, description="the account code (fsbill_account / accountcode)"),
        "tariff": _s("string", minLength=1),
        "credit_limit": _s("string", pattern=POSITIVE_PATTERN, description="default 0"),
        "max_channels": _s("integer", minimum=0, maximum=1_000_000, description="0 = no limit (default)"),
        "clis": {"type": "array", "maxItems": 100, "items": _s("string", pattern=r"^\+?[0-9]{1,32}$")},
        "parent": _s(
            "string",
            pattern=CODE_PATTERN,
            description="the reseller above it (`--parent`); a reseller token's own by default",
        ),
    },
    required=["code", "tariff"],
    closed=True,
)
ACCOUNT_CHANGE = _object(
    {
        "credit_limit": _s("string", pattern=POSITIVE_PATTERN),
        "max_channels": _s("integer", minimum=0, maximum=1_000_000),
        "tariff": _s("string", minLength=1),
        "email": _s("string", description="contact address; 'none' or '' clears it"),
        "status": _s("string", enum=["active", "suspended"], description="suspend or resume (on its own)"),
        "force": _s("boolean", description="apply a lower credit limit even if it leaves less than nothing available"),
        "auto_recharge": AUTO_RECHARGE_OR_NULL,
    },
    required=[],
    closed=True,
)
CALLER_ID = _object({"number": _s("string", pattern=r"^\+?[0-9]{1,32}$")}, closed=True)
GUARDS_CHANGE = _object(
    {
        "daily_cap": _s("string", minLength=1, maxLength=40, description="an amount, none or off"),
        "monthly_cap": _s("string", minLength=1, maxLength=40, description="an amount, none or off"),
        "block": _s("string", minLength=1, maxLength=2000, description="prefixes P,P; none or off"),
        "allow": _s("string", minLength=1, maxLength=2000, description="prefixes P,P; none or off"),
        "max_rate": _s("string", minLength=1, maxLength=40, description="a price a minute, none or off"),
        "max_calls_per_minute": _s("string", minLength=1, maxLength=40, description="N, none or off"),
    },
    required=[],
    closed=True,
)
ACCOUNT_CLOSE = _object(
    {"force": _s("boolean", description="close despite live calls or a balance (moved out by a ledger entry)")},
    required=[],
    closed=True,
)
TOPUP = _object(
    {
        "amount": _s("string", pattern=POSITIVE_PATTERN, description='positive exact amount, e.g. "10.00"'),
        "reference": _s(
            "string", minLength=1, maxLength=255, description="payment reference (default: the Idempotency-Key)"
        ),
        "note": _s("string", maxLength=1000),
    },
    required=["amount"],
    closed=True,
)
ADJUSTMENT = _object(
    {
        "amount": _s("string", pattern=AMOUNT_PATTERN, description='signed exact amount, e.g. "-2.00"'),
        "reason": _s("string", minLength=1, maxLength=1000),
        "reference": _s("string", minLength=1, maxLength=255, description="default: the Idempotency-Key"),
        "force": _s("boolean", description="apply a debit even if it leaves less than nothing available"),
    },
    required=["amount", "reason"],
    closed=True,
)

NEW_TARIFF = _object(
    {
        "name": _s("string", minLength=1, maxLength=64, pattern=r"^[!-~]+$"),
        "currency": _s("string", pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code"),
        "decimals": _s("integer", minimum=0, maximum=6, description="a call's cost is rounded to these (default 4)"),
        "rounding": _s("string", enum=["half_up", "half_even", "up", "down"], description="default half_up"),
        "timezone": _s(
            "string", minLength=1, maxLength=64, description="IANA zone for time-of-day bands (default UTC)"
        ),
        "owner": _s(
            "string", pattern=CODE_PATTERN, description="the reseller it belongs to (a reseller token's own by default)"
        ),
    },
    required=["name", "currency"],
    closed=True,
)
DECK_IMPORT = _object(
    {
        "csv": _s("string", description="the deck, as `rates import` reads it (prefix,rate,... with a header line)"),
        "replace": _s("boolean", description="replace the deck instead of adding to it (default false)"),
        "allow_empty": _s("boolean", description="with replace: a deck without a rate may empty the tariff"),
        "dry_run": _s("boolean", description="check and compare only; write nothing"),
    },
    required=["csv"],
    closed=True,
)
DECK_IMPORTED = _object(
    {
        "tariff": _s("string"),
        "imported": COUNT,
        "replaced": _s("boolean"),
        "deck_version": COUNT,
        "dry_run": _s("boolean"),
    },
    required=["tariff", "deck_version"],
)
FUND = _object(
    {
        "amount": _s("string", pattern=POSITIVE_PATTERN, description='positive exact amount, e.g. "10.00"'),
        "reference": _s("string", minLength=1, maxLength=255, description="default: the Idempotency-Key"),
    },
    required=["amount"],
    closed=True,
)
FUNDING = _object(
    {
        "parent": {"$ref": "#/components/schemas/LedgerEntry"},
        "child": {"$ref": "#/components/schemas/LedgerEntry"},
        "applied": _s("boolean", description="false: its reference was already applied; nothing moved"),
    }
)


def components() -> dict[str, Any]:
    return {
        "Problem": problems.schema(),
        "Account": ACCOUNT,
        "AccountDetail": ACCOUNT_DETAIL,
        "AccountChanged": ACCOUNT_CHANGED,
        "AccountClosed": ACCOUNT_CLOSED,
        "AccountList": _list("Account", paged=True),
        "Change": CHANGE,
        "LedgerEntry": LEDGER_ENTRY,
        "LedgerPage": _list("LedgerEntry", paged=True),
        "Movement": MOVEMENT,
        "Cdr": _cdr(),
        "CdrPage": _list("Cdr", paged=True),
        "LiveCall": LIVE_CALL,
        "LiveCallList": _list("LiveCall"),
        "Tariff": TARIFF,
        "TariffList": _list("Tariff"),
        "Rate": RATE,
        "RateList": _list("Rate"),
        "RateLookup": RATE_LOOKUP,
        "Vendor": VENDOR,
        "VendorList": _list("Vendor"),
        "NewAccount": NEW_ACCOUNT,
        "AccountChange": ACCOUNT_CHANGE,
        "AccountClose": ACCOUNT_CLOSE,
        "Topup": TOPUP,
        "Adjustment": ADJUSTMENT,
        "AutoRecharge": AUTO_RECHARGE,
        "Recharge": RECHARGE,
        "RechargeList": _list("Recharge"),
        "RechargeFailed": RECHARGE_FAILED,
        "AccountGuards": ACCOUNT_GUARDS,
        "CallerId": CALLER_ID,
        "GuardsChange": GUARDS_CHANGE,
        "NewTariff": NEW_TARIFF,
        "DeckImport": DECK_IMPORT,
        "DeckImported": DECK_IMPORTED,
        "Fund": FUND,
        "Funding": FUNDING,
    }


__all__ = ["components"]
