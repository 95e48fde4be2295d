"""CDRs in FreeSWITCH's and the billing world's vocabulary: what `fsbill cdr export` writes.

FreeSWITCH's own fields keep FreeSWITCH's names (mod_cdr_csv templates and mod_xml_cdr
variables: `uuid`, `caller_id_number`, `start_epoch`, `billsec`, `hangup_cause_q850`, ...);
where an fsbill field means the same thing it takes FreeSWITCH's name (fsbill's `caller` is
`caller_id_number`, `destination` is `destination_number`, `start/answer/end` are the stamps).
fsbill's billing fields follow, with the unit last in the name (`billed_s`, `increment_s`).

Differences from FreeSWITCH, on purpose:
- the `*_stamp` fields are UTC ISO 8601 (`2026-12-01T10:00:00.250000Z`); FreeSWITCH writes
  them in the switch's local time without a zone (`2026-12-01 11:00:00`). The `*_epoch` and
  `*_uepoch` fields are the same instants as FreeSWITCH's, in seconds and microseconds.
- `answer_epoch`/`answer_uepoch` are 0 and `answer_stamp` empty for an unanswered call, as in
  FreeSWITCH (switch_channel.c switch_channel_set_timestamps sets answer_epoch from a zero
  answered time); `billsec` is FreeSWITCH's (whole seconds) and is not what fsbill bills:
  `billed_s` is.

Absent values: `null` in JSON/JSONL, an empty cell in CSV, the same for every row and field
(a call refused before it was rated has no `prefix`, `rate`, increments; a refused call no
balance snapshots; one without a known payer no `account`; an unanswered one no `answer_stamp`; `cost`, `charged` and `uncollected` are always present, "0.00" when nothing was).

`balance_when_authorized` is the account's balance when this call was authorized and
`balance_after_settlement` its balance right after this call was settled. They are two
snapshots of a shared balance, not a before/after pair of this call: other calls' debits and
top-ups land in between, so their difference is not this call's `charged` (the ledger has
every movement, each with its own balance after).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fsbill.causes import q850
from fsbill.db.calls import CdrView, LiveCallView
from fsbill.instant import iso

# FreeSWITCH's names (mod_cdr_csv / mod_xml_cdr channel variables), in FreeSWITCH's order.
FREESWITCH_FIELDS = (
    "uuid",
    "bleg_uuid",
    "accountcode",
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "start_epoch",
    "answer_epoch",
    "end_epoch",
    "start_uepoch",
    "answer_uepoch",
    "end_uepoch",
    "duration",
    "billsec",
    "hangup_cause",
    "hangup_cause_q850",
)
# fsbill's billing fields.
BILLING_FIELDS = (
    "account",
    "visit",
    "node",
    "result",
    "reason",
    "currency",
    "prefix",
    "rate",
    "connect_fee",
    "initial_increment_s",
    "increment_s",
    "min_duration_s",
    "billed_s",
    "cost",
    "charged",
    "uncollected",
    "balance_when_authorized",
    "balance_after_settlement",
    "vendor",
    "vendor_cost",
    "margin",
    # inbound numbers (docs/DIDS.md): after every other field, so column positions stay put
    "direction",
    "did",
    # bundles of minutes (docs/BUNDLES.md): the seconds taken from bundles, after the rest
    "bundle_s",
    # a reseller's export (docs/RESELLERS.md): the exchange rate its margin was converted at
    "fx_pair",
    "fx_rate",
)
FIELDS = FREESWITCH_FIELDS + BILLING_FIELDS


def _seconds(us: int | None) -> int:
    return 0 if us is None else us // 1_000_000


def record(cdr: CdrView) -> dict[str, Any]:
    """One CDR as a dict in FIELDS order: amounts as exact strings, instants as described above."""

    def money(value: object) -> str | None:
        return None if value is None else str(value)

    rated = bool(cdr.prefix)  # a call refused before a rate was found has none
    refused = cdr.result == "rejected"
    duration = None if cdr.end_us is None else _seconds(cdr.end_us) - _seconds(cdr.start_us)
    return {
        "uuid": cdr.uuid,
        # captured from the channel (connect reply, last_bridge_to); absent when FreeSWITCH had none
        "bleg_uuid": cdr.bleg_uuid or None,
        "accountcode": cdr.accountcode or None,
        "caller_id_name": cdr.caller_id_name or None,
        "caller_id_number": cdr.caller or None,
        "destination_number": cdr.destination or None,
        "context": cdr.context or None,
        "start_stamp": iso(cdr.start_us),
        "answer_stamp": iso(cdr.answer_us),
        "end_stamp": iso(cdr.end_us),
        "start_epoch": _seconds(cdr.start_us),
        "answer_epoch": _seconds(cdr.answer_us),
        "end_epoch": _seconds(cdr.end_us),
        "start_uepoch": cdr.start_us,
        "answer_uepoch": cdr.answer_us or 0,
        "end_uepoch": cdr.end_us or 0,
        "duration": duration,
        "billsec": cdr.billsec,
        "hangup_cause": cdr.hangup_cause or None,
        "hangup_cause_q850": q850(cdr.hangup_cause) if cdr.hangup_cause else None,
        "account": cdr.account or None,
        "visit": getattr(cdr, "visit", None),
        "node": cdr.node or None,
        "result": cdr.result,
        "reason": cdr.reason or None,
        "currency": cdr.currency or None,
        "prefix": None if not rated else cdr.prefix,
        "rate": None if not rated else money(cdr.rate),
        "connect_fee": None if not rated else money(cdr.connect_fee),
        "initial_increment_s": None if not rated else cdr.initial_increment_s,
        "increment_s": None if not rated else cdr.increment_s,
        "min_duration_s": None if not rated else cdr.min_duration_s,
        "billed_s": cdr.billed_s,
        "cost": money(cdr.cost),
        "charged": money(cdr.charged),
        "uncollected": money(cdr.uncollected),
        # a refused call was neither authorized nor settled: no balance snapshots, whatever
        # the refusal (the database keeps the balance an admission refusal saw)
        "balance_when_authorized": None if refused else money(cdr.balance_before),
        "balance_after_settlement": None if refused else money(cdr.balance_after),
        # least-cost routing: the carrier FreeSWITCH reports, its cost over the same window, the margin
        "vendor": cdr.vendor or None,
        "vendor_cost": money(cdr.vendor_cost),
        "margin": money(cdr.margin),
        "direction": cdr.direction,
        "did": cdr.did or None,
        "bundle_s": getattr(cdr, "bundle_s", 0),
        "fx_pair": cdr.fx_pair or None,
        "fx_rate": cdr.fx_rate or None,
    }


def live_record(call: LiveCallView) -> dict[str, Any]:
    """A live call (`fsbill calls --json`) in the same vocabulary as its CDR will have."""
    return {
        "uuid": call.uuid,
        "visit": getattr(call, "visit", None),
        "account": call.account or None,
        "node": call.node or None,
        "caller_id_number": call.caller or None,
        "destination_number": call.destination or None,
        "prefix": call.prefix or None,
        "rate": str(call.rate),
        "granted_s": call.granted_s,
        "held": str(call.held),
        "debited": str(call.debited),
        "start_stamp": iso(call.created_us),
        "answer_stamp": iso(call.answered_us),
        "cutoff_stamp": iso(call.cutoff_us),
        "lease_until_stamp": iso(call.lease_until_us),
    }


def csv_cells(cdr: CdrView) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in record(cdr).items()}


def records(cdrs: Iterable[CdrView]) -> Iterator[dict[str, Any]]:
    for cdr in cdrs:
        yield record(cdr)


__all__ = ["BILLING_FIELDS", "FIELDS", "FREESWITCH_FIELDS", "csv_cells", "live_record", "q850", "record", "records"]
