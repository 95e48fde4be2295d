"""Inbound numbers in the call machine (fsbill.core.lifecycle, fsbill.core.did), pure: who pays
for a call marked fsbill_direction=inbound, at what price, where it goes, and how it is admitted
or refused (docs/DIDS.md)."""

from __future__ import annotations

import pytest
from test_lifecycle import ACCOUNT, POLICY, config

from fsbill.core import events as ev
from fsbill.core import lifecycle as lc
from fsbill.core.call import AccountState, Channel, Payer
from fsbill.core.did import FREE_ON_EMPTY, Did, admit_inbound, rate_of_did
from fsbill.core.grant import US
from fsbill.core.money import Money
from fsbill.core.records import PayerAccount

T0 = 1_700_000_000 * US
OWNER = PayerAccount(7, "shop", 1, "EUR", "active")
DID = Did("4930555000", 7, "sofia/gateway/pbx/{destination}", Money.parse("0.60"), Money.parse("0.05"), 30, 6)


def inbound(destination: str = "+4930555000", **variables: str) -> Channel:
    # the caller id and even an account variable name someone else: the number's owner pays
    return Channel("u-9", "15550001111", destination, T0, None, {"fsbill_direction": "inbound", **variables})


def active(balance: str = "10.00", status: str = "active") -> AccountState:
    return AccountState(status, Money.parse(balance), Money(0), Money(0))


def test_an_inbound_call_looks_up_the_called_number_never_the_caller():
    state, commands = lc.start(inbound(fsbill_account="acme"), config(), T0)
    assert commands[-1] == lc.FindPayer(Payer("did", "4930555000", "destination_number"))
    state, commands = lc.step(state, ev.PayerFound(OWNER, DID), T0)
    [reserve] = [c for c in commands if isinstance(c, lc.Reserve)]
    assert not [c for c in commands if isinstance(c, (lc.FindRate, lc.PlanRoute))]  # the number's own price
    assert (reserve.account_id, reserve.number, reserve.did, reserve.rate) == (7, "4930555000", DID, rate_of_did(DID))
    assert (reserve.rate.prefix, reserve.rate.rate, reserve.rate.connect_fee) == (
        "4930555000",
        Money.parse("0.60"),
        Money.parse("0.05"),
    )
    assert (reserve.rate.initial_increment_s, reserve.rate.increment_s) == (30, 6)
    account = AccountState("active", Money.parse("10.00"), Money(0), Money(0))
    call = admit_inbound("u-9", 1, account, DID, 0, POLICY, T0, 120).call
    assert call is not None
    state, commands = lc.step(state, ev.Reserved("", call, 10_000_000), T0)
    assert state.phase == lc.LIVE
    assert lc.Bridge("sofia/gateway/pbx/4930555000") in commands
    arm = next(c for c in commands if isinstance(c, lc.Arm))
    assert ("fsbill_account", "shop") in arm.variables and arm.cutoff_after_answer_s is not None


def test_a_call_without_the_direction_is_an_outbound_call_of_its_caller():
    state, commands = lc.start(
        Channel("u-9", "15550001111", "4930555000", T0, None, {"fsbill_account": "acme"}), config(), T0
    )
    assert commands[-1] == lc.FindPayer(Payer("code", "acme", "fsbill_account"))
    _, commands = lc.step(state, ev.PayerFound(ACCOUNT), T0)
    assert isinstance(commands[-1], lc.FindRate)  # rated on the caller's deck


@pytest.mark.parametrize(
    "found", [ev.PayerFound(None), ev.PayerFound(OWNER, Did("4930555000", 7, "x", status="removed"))]
)
def test_an_unknown_or_removed_number_is_refused_and_its_cdr_says_inbound(found):
    state, _ = lc.start(inbound(), config(), T0)
    state, commands = lc.step(state, found, T0)
    assert commands[-1] == lc.Refuse("unknown_did")
    note = next(c for c in commands if isinstance(c, lc.Note) and c.kind == "rejected")
    assert note.fields["reason"] == "unknown_did"  # the rejected-calls metric's label
    state, _ = lc.step(state, ev.Refusal(""), T0)
    end = ev.HangupComplete("NORMAL_CLEARING", T0, None, T0 + US, 0, "4930555000")
    _, commands = lc.step(state, end, T0 + US)
    record = commands[-1].record
    assert (record.direction, record.did, record.reason) == ("inbound", "4930555000", "unknown_did")


def test_an_inbound_call_to_something_that_is_not_a_number_is_unknown():
    _, commands = lc.start(inbound("pbx-reception"), config(), T0)
    assert commands[-1] == lc.Refuse("unknown_did")


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_an_owner_that_may_not_pay_is_refused_unless_the_number_is_free_on_empty(status):
    owner = PayerAccount(7, "shop", 1, "EUR", status)
    state, _ = lc.start(inbound(), config(), T0)
    _, commands = lc.step(state, ev.PayerFound(owner, DID), T0)
    assert commands[-1] == lc.Refuse(status)
    state, _ = lc.start(inbound(), config(), T0)
    free = Did("4930555000", 7, "x", Money.parse("0.60"), on_empty="free")
    _, commands = lc.step(state, ev.PayerFound(owner, free), T0)
    assert isinstance(commands[-1], lc.Reserve)  # decided with the reservation, under the owner's lock


def test_admission_counts_the_numbers_channels_first():
    limited = Did("4930555000", 7, "x", Money.parse("0.60"), max_channels=2, on_empty="free")
    assert admit_inbound("u", 1, active(), limited, 2, POLICY, T0, 120).reason == "channel_limit"
    assert admit_inbound("u", 1, active(), limited, 1, POLICY, T0, 120).call is not None


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        (active("0"), "insufficient_funds"),
        (active(status="suspended"), "suspended"),
        (active(status="closed"), "closed"),
    ],
)
def test_on_empty_reject_refuses_and_free_lets_the_call_through_at_a_zero_rate(account, reason):
    rejecting = Did("4930555000", 7, "x", Money.parse("0.60"))
    assert admit_inbound("u", 1, account, rejecting, 0, POLICY, T0, 120).reason == reason
    free = Did("4930555000", 7, "x", Money.parse("0.60"), on_empty="free")
    admission = admit_inbound("u", 1, account, free, 0, POLICY, T0, 120)
    call = admission.call
    assert admission.reason == FREE_ON_EMPTY and call is not None
    assert (call.rate.rate, call.held, call.granted_s, call.final) == (Money(0), Money(0), POLICY.max_call_s, True)


def test_a_number_without_a_rate_is_free_inbound_and_holds_nothing():
    free = Did("4930555000", 7, "x")
    admission = admit_inbound("u", 1, active("0"), free, 0, POLICY, T0, 120)
    assert admission.reason == "" and admission.call is not None
    assert (admission.call.rate.rate, admission.call.held) == (Money(0), Money(0))


def test_an_owner_with_money_pays_the_numbers_price():
    admission = admit_inbound(
        "u", 1, active("0.10"), Did("4930555000", 7, "x", Money.parse("0.60")), 0, POLICY, T0, 120
    )
    assert admission.reason == "" and admission.call is not None
    assert admission.call.granted_s == 10 and admission.call.held == Money.parse("0.10")


def test_a_call_let_through_unbilled_is_never_cut_for_its_owners_suspension():
    from dataclasses import replace

    from fsbill.core.call import Beat

    cfg = replace(config(), on_suspend="cut")
    owner = PayerAccount(7, "shop", 1, "EUR", "suspended")
    free = Did("4930555000", 7, "x", Money.parse("0.60"), on_empty="free")
    state, _ = lc.start(inbound(), cfg, T0)
    state, _ = lc.step(state, ev.PayerFound(owner, free), T0)
    admission = admit_inbound("u-9", 1, active(status="suspended"), free, 0, POLICY, T0, 120)
    state, commands = lc.step(state, ev.Reserved(admission.reason, admission.call, 0), T0)
    assert state.unbilled and lc.Note("accepted", {"reason": FREE_ON_EMPTY}) in commands
    state, _ = lc.step(state, ev.Answered(T0 + US), T0 + US)
    state, commands = lc.step(state, ev.Tick(), T0 + 2 * US)
    beat = next(c for c in commands if isinstance(c, lc.Beat))
    _, commands = lc.step(state, ev.BeatDone(Beat(beat.known, Money(0), Money(0), False, False)), T0 + 2 * US)
    assert not [c for c in commands if isinstance(c, lc.Kill)]
