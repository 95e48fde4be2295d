"""Call decisions: who pays, what is rated, where it goes, how FreeSWITCH enforces it."""

import pytest

from fsbill.config import Cutoff
from fsbill.core.call import (
    Channel,
    billing_window,
    destination_of,
    dial_string_of,
    nibble_rate_of,
    payer_of,
    result_of,
)
from fsbill.core.money import Money
from fsbill.errors import MoneyError
from fsbill.esl import cutoff_api, cutoff_mark, cutoff_on_answer, multiset_arg, warning_api, warning_on_answer


def channel(caller="15551230000", destination="4915112345678", **variables):
    return Channel(uuid="u-1", caller=caller, destination=destination, created_us=1, variables=variables)


@pytest.mark.parametrize(
    "variables, caller, expected",
    [
        ({"fsbill_account": "a", "nibble_account": "b", "accountcode": "c"}, "1", ("code", "a", "fsbill_account")),
        ({"nibble_account": "b", "accountcode": "c"}, "1", ("code", "b", "nibble_account")),
        ({"accountcode": "c"}, "1", ("code", "c", "accountcode")),
        ({"accountcode": "_undef_"}, "+15551230000", ("cli", "15551230000", "caller_id_number")),
        ({"fsbill_account": "  "}, "", None),
    ],
)
def test_payer_precedence(variables, caller, expected):
    payer = payer_of(channel(caller=caller, **variables), nibblebill_compat=True)
    assert (payer and (payer.by, payer.value, payer.source)) == expected


def test_nibble_account_is_ignored_without_nibblebill_compat():
    payer = payer_of(channel(nibble_account="b", accountcode="c"))
    assert (payer.by, payer.value, payer.source) == ("code", "c", "accountcode")
    payer = payer_of(channel(caller="+1555", nibble_account="b"))
    assert (payer.by, payer.value) == ("cli", "1555")


def test_destination_variable_overrides_dialled_number():
    assert destination_of(channel()) == "4915112345678"
    assert destination_of(channel(fsbill_destination="33123")) == "33123"


def test_dial_string_from_dialplan_else_route_template():
    assert (
        dial_string_of(channel(fsbill_dial_string="loopback/9999/public"), "sofia/gw/{destination}", "49")
        == "loopback/9999/public"
    )
    assert dial_string_of(channel(), "sofia/gateway/carrier/{destination}", "4915") == "sofia/gateway/carrier/4915"
    assert dial_string_of(channel(), "", "4915") is None


def test_nibble_rate():
    assert nibble_rate_of(channel(), True) is None
    assert nibble_rate_of(channel(nibble_rate="0.05"), True) == Money.parse("0.05")
    for bad in ("-1", "1e3", "abc"):
        with pytest.raises(MoneyError):
            nibble_rate_of(channel(nibble_rate=bad), True)


def test_nibble_rate_is_trusted_only_with_compat_and_zero_only_when_allowed():
    assert nibble_rate_of(channel(nibble_rate="0.05")) is None  # default: the deck's price
    assert nibble_rate_of(channel(nibble_rate="abc")) is None  # not even read
    with pytest.raises(MoneyError, match="nibblebill_allow_zero_rate"):
        nibble_rate_of(channel(nibble_rate="0"), True)
    with pytest.raises(MoneyError, match="nibblebill_allow_zero_rate"):
        nibble_rate_of(channel(nibble_rate="0.000"), True)
    assert nibble_rate_of(channel(nibble_rate="0"), True, allow_zero=True) == Money(0)


def test_cutoff_commands_hangup_mode():
    c = Cutoff()
    assert cutoff_on_answer(c, 119) == ("sched_hangup", "+119 ALLOTTED_TIMEOUT")
    assert cutoff_api(c, "u-1", 1795375900) == "sched_hangup 1795375900 u-1 ALLOTTED_TIMEOUT"
    assert warning_on_answer(c, 59) == ("sched_broadcast", f"+59 {c.warning_prompt} aleg")
    assert warning_api(c, "u-1", 1795375840) == f"sched_broadcast 1795375840 u-1 {c.warning_prompt} aleg"


def test_cutoff_commands_transfer_mode():
    c = Cutoff(mode="transfer", transfer_extension="empty", transfer_context="public")
    assert cutoff_on_answer(c, 30) == ("sched_transfer", "+30 empty XML public")
    assert cutoff_api(c, "u-1", 5) == "sched_transfer 5 u-1 empty XML public"


@pytest.mark.parametrize(
    "answered, cause, transferred, mode, expected",
    [
        (False, "NO_ANSWER", "", "hangup", "unanswered"),
        (True, "NORMAL_CLEARING", "", "hangup", "completed"),
        (True, "ALLOTTED_TIMEOUT", "", "hangup", "cut_off"),
        (True, "NORMAL_CLEARING", "fsbill_cutoff", "transfer", "cut_off"),
        (True, "NORMAL_CLEARING", "4915", "transfer", "completed"),
    ],
)
def test_result(answered, cause, transferred, mode, expected):
    assert result_of(answered, cause, transferred, cutoff_mark(Cutoff(mode=mode))) == expected


def test_billing_window_stops_at_the_end_of_the_bridge():
    assert billing_window(None, 10, 5) == (None, None)
    assert billing_window(100, 500, None) == (100, 500)
    assert billing_window(100, 500, 300) == (100, 300)  # transferred to the cut-off extension
    assert billing_window(100, 500, 600) == (100, 500)  # unbridge after hangup changes nothing
    assert billing_window(100, 500, 50) == (100, 500)  # an unbridge before answer is ignored


def test_multiset_argument_uses_a_delimiter_no_value_contains():
    assert multiset_arg(["a=1", "b=sched_hangup +29 ALLOTTED_TIMEOUT"]) == "^^|a=1|b=sched_hangup +29 ALLOTTED_TIMEOUT"
    assert multiset_arg(["a=x|y", "b=2"]) == "^^~a=x|y~b=2"


def test_an_instant_too_close_to_now_is_sent_relative():
    """switch_scheduler.c takes a runtime already past as relative to now (it never fires), so an
    instant the command might reach FreeSWITCH after is sent as `+N` instead."""
    from fsbill.esl import _when

    now = 1_000_000_000 * 1_000_000 + 400_000
    assert _when(now + 60_000_000, now) == 1_000_000_060
    assert _when(now + 1_600_000, now) == "+2"
    assert _when(now + 100, now) == "+1"
    assert _when(now - 5_000_000, now) == "+1"
