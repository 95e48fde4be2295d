"""The call's decisions, free of FreeSWITCH's wire format and of the database.

The ESL adapter turns the `connect` reply into a `Channel`; this module decides who pays,
what number is rated, where the call is bridged, and which FreeSWITCH applications or API
commands enforce the grant. Nothing here sends anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fsbill.config import Cutoff
from fsbill.core.money import Money
from fsbill.errors import MoneyError

# Channel variables fsbill reads (the dialplan contract; see README "Channel variables").
READ_VARIABLES = (
    "fsbill_account",
    "nibble_account",
    "accountcode",
    "fsbill_destination",
    "fsbill_dial_string",
    "nibble_rate",
)


@dataclass(frozen=True)
class Channel:
    uuid: str
    caller: str
    destination: str
    created_us: int
    answered_us: int | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    def var(self, name: str) -> str:
        value = self.variables.get(name, "")
        return "" if value == "_undef_" else value.strip()


@dataclass(frozen=True)
class Payer:
    """How the paying account is named: by its code, or by the caller id mapped to it."""

    by: str  # "code" | "cli"
    value: str
    source: str  # which variable or header it came from (logged, put in the CDR reason)


def payer_of(channel: Channel, nibblebill_compat: bool = False) -> Payer | None:
    """fsbill_account, else nibble_account (mod_nibblebill dialplans, only with
    `nibblebill_compat`), else accountcode, else the caller id number looked up in the
    account caller-id map."""
    names = (
        ("fsbill_account", "nibble_account", "accountcode") if nibblebill_compat else ("fsbill_account", "accountcode")
    )
    for name in names:
        value = channel.var(name)
        if value:
            return Payer("code", value, name)
    caller = channel.caller.strip().lstrip("+")
    if caller:
        return Payer("cli", caller, "caller_id_number")
    return None


def destination_of(channel: Channel) -> str:
    return channel.var("fsbill_destination") or channel.destination


def dial_string_of(channel: Channel, route_template: str, destination: str) -> str | None:
    """`fsbill_dial_string` from the dialplan, else the configured route template."""
    explicit = channel.var("fsbill_dial_string")
    if explicit:
        return explicit
    if route_template:
        return route_template.replace("{destination}", destination)
    return None


def nibble_rate_of(channel: Channel, nibblebill_compat: bool = False, allow_zero: bool = False) -> Money | None:
    """mod_nibblebill's `nibble_rate` (price per minute), when the dialplan sets one and
    `nibblebill_compat` is on (otherwise the channel's price is the deck's, whatever it says).
    Raises MoneyError for a value that is not an exact non-negative amount, and for 0 unless
    `allow_zero` (`nibblebill_allow_zero_rate`): a zero price makes every call free."""
    if not nibblebill_compat:
        return None
    raw = channel.var("nibble_rate")
    if not raw:
        return None
    rate = Money.parse(raw)
    if rate.is_negative():
        raise MoneyError(f"nibble_rate must not be negative, got {raw!r}")
    if not rate and not allow_zero:
        raise MoneyError("nibble_rate 0 would make the call free: set nibblebill_allow_zero_rate: true to allow it")
    return rate


# -- enforcement commands -----------------------------------------------------------------------
def cutoff_on_answer(cutoff: Cutoff, offset_s: int) -> tuple[str, str]:
    """The dialplan application (name, argument) that `execute_on_answer` runs so that
    FreeSWITCH itself ends the call `offset_s` after answer, even if fsbill dies."""
    if cutoff.mode == "transfer":
        return (
            "sched_transfer",
            f"+{offset_s} {cutoff.transfer_extension} {cutoff.transfer_dialplan} {cutoff.transfer_context}",
        )
    return "sched_hangup", f"+{offset_s} {cutoff.hangup_cause}"


def warning_on_answer(cutoff: Cutoff, offset_s: int) -> tuple[str, str]:
    return "sched_broadcast", f"+{offset_s} {cutoff.warning_prompt} {cutoff.warning_leg}"


def cutoff_api(cutoff: Cutoff, uuid: str, epoch_s: int) -> str:
    """API command moving the cut-off to an absolute epoch second."""
    if cutoff.mode == "transfer":
        return f"sched_transfer {epoch_s} {uuid} {cutoff.transfer_extension} {cutoff.transfer_dialplan} {cutoff.transfer_context}"
    return f"sched_hangup {epoch_s} {uuid} {cutoff.hangup_cause}"


def warning_api(cutoff: Cutoff, uuid: str, epoch_s: int) -> str:
    return f"sched_broadcast {epoch_s} {uuid} {cutoff.warning_prompt} {cutoff.warning_leg}"


def result_of(answered: bool, hangup_cause: str, transferred_to: str, cutoff: Cutoff) -> str:
    """completed | cut_off | unanswered, for the CDR and the metrics."""
    if not answered:
        return "unanswered"
    if cutoff.mode == "hangup" and hangup_cause == cutoff.hangup_cause:
        return "cut_off"
    if cutoff.mode == "transfer" and transferred_to == cutoff.transfer_extension:
        return "cut_off"
    return "completed"


def billing_window(
    answered_us: int | None, end_us: int | None, unbridged_us: int | None
) -> tuple[int | None, int | None]:
    """The billed part of a call: from the A leg's answer to its end, or to the end of the
    bridge if that came first (a transfer cut-off tears the bridge down and sends the caller
    to an announcement that is not billed)."""
    if answered_us is None:
        return None, None
    end = end_us
    if unbridged_us is not None and unbridged_us >= answered_us and (end is None or unbridged_us < end):
        end = unbridged_us
    return answered_us, end
