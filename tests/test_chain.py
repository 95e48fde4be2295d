"""The pure core of resellers (fsbill.core.chain): the grant every level affords, every level's
extension and settlement, and a property test over random trees of concurrent calls, top-ups
and suspensions in which the invariant holds at every level after every step, each level in a
random currency (its margin converted at a random exact rate, or empty without one)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core import chain, fx
from fsbill.core.call import AccountState, LiveCall, admit, answer, beat, settlement
from fsbill.core.grant import Cap, GrantPlan, GrantPolicy, capped, wants_extension
from fsbill.core.money import Money
from fsbill.core.rating import Rate, cost

M = Money.parse
US = 1_000_000
POLICY = GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60)


def acct(balance: str, credit: str = "0", held: str = "0", status: str = "active", **kw) -> AccountState:
    return AccountState(status, M(balance), M(credit), M(held), **kw)


def level(balance: str, per_min: str, **kw) -> chain.Level:
    return chain.Level(0, acct(balance, **kw), Rate("49", M(per_min)))


# -- dense cases ------------------------------------------------------------------------------------------
def test_no_levels_no_cap():
    assert chain.cap([], 0, POLICY) is None


def test_the_cap_is_the_poorest_level_at_its_own_rate():
    levels = [level("10.00", "0.30"), level("0.30", "0.60")]
    assert chain.cap(levels, 0, POLICY) == Cap(30, True)
    assert chain.cap([level("10.00", "0.30")], 0, POLICY) == Cap(120, False)  # one slice


def test_a_level_that_cannot_afford_the_first_block_caps_at_zero():
    assert chain.cap([level("0.005", "0.60")], 0, POLICY) == Cap(0, True)


def test_refusal_reasons_of_the_levels_above():
    assert chain.refusal([level("1", "1")]) == ""
    assert chain.refusal([level("1", "1", status="suspended")]) == "suspended"
    assert chain.refusal([level("1", "1"), level("1", "1", status="closed")]) == "closed"
    assert chain.refusal([level("1", "1", max_channels=2, live_channels=2)]) == "channel_limit"


def test_a_suspended_level_suspends_the_payer_for_heartbeats():
    payer = acct("1")
    assert chain.status_of(payer, [level("1", "1")]).status == "active"
    assert chain.status_of(payer, [level("1", "1", status="suspended")]).status == "suspended"


def test_capped_cuts_to_a_billing_boundary_of_the_payer_rate():
    per_min = Rate("44", M("1.20"), initial_increment_s=60, increment_s=60)
    plan = GrantPlan(120, M("2.40"), False)
    assert capped(per_min, 0, plan, Cap(119, False), 1) == GrantPlan(60, M("1.20"), False)
    assert capped(per_min, 0, plan, Cap(59, False), 1) == GrantPlan(0, Money(0), True)
    assert capped(per_min, 0, plan, None, 1) is plan
    assert capped(per_min, 60, plan, Cap(90, True), 1) == GrantPlan(60, Money(0), True)  # never taken back


def test_admission_with_a_cap_grants_what_the_reseller_affords():
    adm = admit("u", 1, acct("100.00"), Rate("49", M("1.20")), POLICY, 0, 30, "49", Cap(30, True))
    assert adm.call is not None and adm.call.granted_s == 30 and adm.call.held == M("0.60") and adm.call.final
    holds = chain.first_holds([level("0.30", "0.60")], 30)
    assert [h.held for h in holds] == [M("0.30")]


def test_extension_debits_and_extends_each_level_at_its_rate():
    h = chain.LevelHold(7, 0, Rate("49", M("0.60")), M("1.20"))
    [b] = chain.extension([h], 0, 70 * US, 120, 200)
    assert (b.debit, b.extra_hold) == (M("0.70"), M("0.80"))
    assert (b.hold.debited, b.hold.held) == (M("0.70"), M("1.30"))
    assert b.hold.debited + b.hold.held == cost(h.rate, 200)


def test_settle_level_charges_the_same_window_at_the_level_rate():
    call = LiveCall("u", 1, Rate("49", M("1.20")), 30, M("0.60"), Money(0), 0, 10**9, answered_us=0)
    h = chain.LevelHold(7, 0, Rate("49", M("0.60")), M("0.30"))
    seen = chain.settle_level(call, h, acct("0.30", held="0.30"), 0, 20 * US, True)
    assert (seen.billed_s, seen.cost, seen.post, seen.release) == (20, M("0.20"), M("0.20"), M("0.30"))
    lost = chain.settle_level(call, h, acct("0.30", held="0.30"), None, None, False)
    assert lost.charged == M("0.01")  # the first 1 s block, provably owed


def test_margins_are_against_the_level_below():
    lines = fx.margins([(M("0.10"), "EUR"), (M("0.20"), "EUR")], (M("0.40"), "EUR"), {})
    assert [(m.margin, m.fx) for m in lines] == [(M("0.10"), None), (M("0.20"), None)]


# -- the property: random trees, calls, top-ups and suspensions ---------------------------------------------
@dataclass
class Acc:
    parent: int | None
    rate: Rate
    state: AccountState
    ledger: list[Money] = field(default_factory=list)
    currency: str = "EUR"


@dataclass
class Live:
    payer: int
    call: LiveCall
    holds: list[chain.LevelHold]


rates = st.builds(
    lambda micros, fee, inc: Rate("49", Money(micros), Money(fee), inc[0], inc[1]),
    st.integers(1, 3_000_000),
    st.sampled_from([0, 0, 50_000]),
    st.sampled_from([(1, 1), (30, 6), (60, 60), (1, 1)]),
)


def chain_of(accs: dict[int, Acc], payer: int) -> list[int]:
    out, above = [], accs[payer].parent
    while above is not None:
        out.append(above)
        above = accs[above].parent
    return out[::-1]


def post(a: Acc, amount: Money, release: Money = Money(0)) -> None:
    a.state = replace(a.state, balance=a.state.balance + amount, held=a.state.held - release)
    a.ledger.append(amount)


def hold(a: Acc, amount: Money, channels: int = 0) -> None:
    a.state = replace(a.state, held=a.state.held + amount, live_channels=a.state.live_channels + channels)


def check(accs: dict[int, Acc], live: list[Live]) -> None:
    for i, a in accs.items():
        s = a.state
        assert s.available.micros >= 0, f"account {i} below zero"
        assert s.balance == sum(a.ledger, Money(0))
        held = Money(0)
        for lv in live:
            if lv.payer == i:
                held += lv.call.held
            held += sum((h.held for h in lv.holds if h.account_id == i), Money(0))
        assert s.held == held
    for lv in live:  # every level's promise is paid for: debited + held == cost(grant) at its own rate
        assert lv.call.debited + lv.call.held == cost(lv.call.rate, lv.call.granted_s)
        for h in lv.holds:
            assert h.debited + h.held == cost(h.rate, lv.call.granted_s)


CURRENCIES = ("EUR", "EUR", "USD", "RUB")
fx_rates_drawn = st.dictionaries(
    st.sampled_from([("EUR", "USD"), ("USD", "EUR"), ("USD", "RUB"), ("RUB", "EUR")]),
    st.builds(lambda n, scale: format(Decimal(n).scaleb(-scale), "f"), st.integers(1, 10**6), st.integers(0, 6)),
)


def check_margins(levels: list[tuple[Money, str]], payer: tuple[Money, str], rates: dict) -> None:
    """Each level's margin is what the level below paid, in this level's currency (the rate set
    that way multiplies, the other way divides; half-even to 6 decimals, checked with Decimal),
    minus its own cost; None across currencies without a rate."""
    if not levels:
        assert fx.margins(levels, payer, rates) == []
        return
    below = levels[1:] + [payer]
    for (c, cur), (b, b_cur), got in zip(levels, below, fx.margins(levels, payer, rates), strict=True):
        if cur == b_cur:
            assert got == fx.LevelMargin(b - c, None)
            continue
        if (b_cur, cur) in rates:
            exact = b.to_decimal() * Decimal(rates[(b_cur, cur)])
        elif (cur, b_cur) in rates:
            exact = b.to_decimal() / Decimal(rates[(cur, b_cur)])
        else:
            assert got == fx.LevelMargin(None, None)
            continue
        converted = Money.parse(exact.quantize(Decimal("0.000001"), ROUND_HALF_EVEN))
        assert got.margin == converted - c and got.fx is not None


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_the_invariant_holds_at_every_level_after_every_step(data):
    n = data.draw(st.integers(1, 7))
    accs: dict[int, Acc] = {}
    for i in range(n):
        parents = [j for j in accs if len(chain_of(accs, j)) < 3]  # depth at most 4
        parent = data.draw(st.sampled_from([None, *parents]))
        balance = Money(data.draw(st.integers(0, 5_000_000)))
        credit = Money(data.draw(st.sampled_from([0, 0, 1_000_000])))
        state = AccountState("active", Money(0), credit, Money(0))
        accs[i] = Acc(parent, data.draw(rates), state, currency=data.draw(st.sampled_from(CURRENCIES)))
        if balance:
            post(accs[i], balance)
    fx_rates = data.draw(fx_rates_drawn)
    live: list[Live] = []
    now = 0
    for step in range(data.draw(st.integers(1, 30))):
        now += data.draw(st.integers(0, 40)) * US
        op = data.draw(st.sampled_from(["call", "call", "beat", "beat", "end", "topup", "suspend"]))
        if op == "call":
            payer = data.draw(st.sampled_from(sorted(accs)))
            ids = chain_of(accs, payer)
            levels = [chain.Level(i, accs[i].state, accs[i].rate) for i in ids]
            if chain.refusal(levels):
                continue
            cap = chain.cap(levels, 0, POLICY)
            if cap is not None and cap.granted_s == 0:
                continue
            adm = admit(f"c{step}", 1, accs[payer].state, accs[payer].rate, POLICY, now, 30, "49", cap)
            if adm.call is None:
                continue
            call = answer(adm.call, now, POLICY)
            holds = chain.first_holds(levels, call.granted_s)
            hold(accs[payer], call.held, 1)
            for h in holds:
                assert h.held <= accs[h.account_id].state.available  # each level affords its share
                hold(accs[h.account_id], h.held, 1)
            live.append(Live(payer, call, holds))
        elif op == "beat" and live:
            lv = data.draw(st.sampled_from(live))
            if now > lv.call.cutoff_us:  # FreeSWITCH has cut it: only its end remains
                continue
            levels = [chain.Level(h.account_id, accs[h.account_id].state, h.rate) for h in lv.holds]
            elapsed = (now - lv.call.answered_us) // US
            cap = (
                chain.cap(levels, lv.call.granted_s, POLICY, elapsed)
                if wants_extension(lv.call.granted_s, elapsed, POLICY)
                else None
            )
            state = chain.status_of(accs[lv.payer].state, levels)
            b = beat(lv.call, state, now, POLICY, True, cap)
            beats = chain.extension(lv.holds, lv.call.answered_us, now, lv.call.granted_s, b.call.granted_s)
            post(accs[lv.payer], -b.debit, b.debit)
            hold(accs[lv.payer], b.extra_hold)
            for lb in beats:
                post(accs[lb.hold.account_id], -lb.debit, lb.debit)
                hold(accs[lb.hold.account_id], lb.extra_hold)
            lv.call, lv.holds = b.call, [lb.hold for lb in beats]
        elif op == "end" and live:
            lv = data.draw(st.sampled_from(live))
            assert lv.call.answered_us is not None and lv.call.cutoff_us is not None
            end = min(now, lv.call.cutoff_us)  # FreeSWITCH ends it at its cut-off at the latest
            payer_charge = settlement(lv.call, lv.call.answered_us, end, accs[lv.payer].state)
            assert payer_charge.uncollected == Money(0)  # within its grant: fully held
            post(accs[lv.payer], -payer_charge.post, payer_charge.release)
            hold(accs[lv.payer], Money(0), -1)
            billed = payer_charge.billed_s
            level_costs = []
            for h in lv.holds:
                a = accs[h.account_id]
                ch = chain.settle_level(lv.call, h, a.state, lv.call.answered_us, end, True)
                assert ch.uncollected == Money(0) and ch.charged == ch.cost
                assert ch.cost == cost(h.rate, -(-(end - lv.call.answered_us) // US))
                post(a, -ch.post, ch.release)
                hold(a, Money(0), -1)
                level_costs.append((ch.cost, a.currency))
            check_margins(level_costs, (payer_charge.cost, accs[lv.payer].currency), fx_rates)
            assert billed >= 0
            live.remove(lv)
        elif op == "topup":
            post(accs[data.draw(st.sampled_from(sorted(accs)))], Money(data.draw(st.integers(1, 2_000_000))))
        elif op == "suspend":
            i = data.draw(st.sampled_from(sorted(accs)))
            a = accs[i]
            a.state = replace(a.state, status="suspended" if a.state.status == "active" else "active")
        check(accs, live)
