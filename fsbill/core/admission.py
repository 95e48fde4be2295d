"""The call machine's first phases (fsbill.core.lifecycle): who pays, at what rate, over which
route, and the reservation; once money is held, FreeSWITCH is told the call may go on (the
cut-off armed, the bridge). With `on_db_error: allow` a call the database cannot authorize goes
on unreserved, on a short grant.

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from fsbill.core import events as ev
from fsbill.core.call import LiveCall, Payer, destination_of, dial_string_of, nibble_rate_of, warning_after_answer_s
from fsbill.core.callstate import DONE, LIVE, PAYER, RATE, RESERVE, ROUTE, CallState, Refused, Step, schedule_beat
from fsbill.core.commands import (
    Arm,
    ArmFromNow,
    Bridge,
    Command,
    FindRate,
    Finish,
    Follow,
    HoldChanged,
    Note,
    PlanRoute,
    Reserve,
    RoutesStale,
)
from fsbill.core.did import FREE_ON_EMPTY, UNKNOWN_DID, Did, dial_of_did, rate_of_did
from fsbill.core.frozen import evolve
from fsbill.core.grant import cutoff_offset_s
from fsbill.core.money import Money
from fsbill.core.rating import Rate, normalize_number
from fsbill.core.records import Leg, PayerAccount
from fsbill.core.refusal import refusal_of, refuse
from fsbill.core.routing import NO_ROUTE, VENDOR_UNAVAILABLE, Route
from fsbill.errors import MoneyError, NumberError


def authorizing(state: CallState, event: ev.Event, now_us: int) -> Step:
    if isinstance(event, ev.DatabaseDown):
        return _database_down(state, event.error, now_us)
    if isinstance(event, (ev.SocketClosed, ev.CommandFailed)):
        return evolve(state, phase=DONE), [Note("authorization_abandoned", {"uuid": state.channel.uuid}), Finish()]
    if state.phase == PAYER and isinstance(event, ev.PayerFound):
        if state.payer is not None and state.payer.by == "did":
            return _did_found(state, event.account, event.did)
        return _payer_found(state, event.account, now_us)
    if state.phase == RATE and isinstance(event, ev.RateFound):
        if event.rate is None:
            return refuse(state, refusal_of(state, "no_rate", f"no rate for {state.number}"))
        return _rated(evolve(state, rate=event.rate), now_us)
    if state.phase == ROUTE and isinstance(event, ev.RoutePlanned):
        return _routed(state, event.route, event.legs)
    if state.phase == RESERVE and isinstance(event, ev.Reserved):
        return _reserved(state, event, now_us)
    return state, []  # a channel event before the call is authorized changes nothing yet


def _payer_found(state: CallState, account: PayerAccount | None, now_us: int) -> Step:
    ch, config = state.channel, state.config
    payer = state.payer
    assert payer is not None
    if account is None:
        # no account: the CDR's account stays empty (the caller id is in its own field, the
        # detail says which variable named whom)
        return refuse(state, Refused("unknown_account", f"{payer.source}={payer.value}"))
    state = evolve(state, account=account)
    if account.status != "active":
        reason = "closed" if account.status == "closed" else "suspended"
        return refuse(state, refusal_of(state, reason))
    destination = destination_of(ch)
    try:
        number = normalize_number(destination, config.international_prefix)
    except NumberError as exc:
        return refuse(state, refusal_of(state, "invalid_number", str(exc)))
    state = evolve(state, number=number)
    try:
        nibble = nibble_rate_of(ch, config.nibblebill_compat, config.nibblebill_allow_zero_rate)
    except MoneyError as exc:
        return refuse(state, refusal_of(state, "no_rate", f"bad nibble_rate: {exc}"))
    if nibble is not None:
        return _rated(evolve(state, rate=Rate.adhoc(nibble)), now_us)
    return evolve(state, phase=RATE), [FindRate(account.tariff_id, number, ch.created_us or now_us)]


def _did_found(state: CallState, owner: PayerAccount | None, did: Did | None) -> Step:
    """An inbound call: its number's owner pays at the number's own price, and it is bridged to
    the number's dial string. A number that is not ours (or was removed) is refused; an owner
    that may not pay is refused here unless the number lets such calls through (on_empty:
    free, decided with the reservation, fsbill.core.did.admit_inbound)."""
    payer = state.payer
    assert payer is not None
    if did is None or owner is None or did.status != "active":
        return refuse(state, Refused(UNKNOWN_DID, f"no inbound number {payer.value}"))
    state = evolve(state, account=owner, did=did, number=did.number, rate=rate_of_did(did), dial=dial_of_did(did))
    if owner.status != "active" and did.on_empty != "free":
        return refuse(state, refusal_of(state, "closed" if owner.status == "closed" else "suspended"))
    return _routed(state, None, ())


def _rated(state: CallState, now_us: int) -> Step:
    """Who picks the bridge: the dialplan's fsbill_dial_string, else least-cost routing, else
    the route template."""
    account, rate = state.account, state.rate
    assert account is not None and rate is not None
    dial = dial_string_of(state.channel, "", state.number) or ""
    state = evolve(state, dial=dial)
    if not dial and state.config.lcr:
        at = state.channel.created_us or now_us
        return evolve(state, phase=ROUTE), [PlanRoute(account.currency, rate, state.number, at)]
    return _routed(state, None, ())


def _routed(state: CallState, route: Route | None, legs: tuple[Leg, ...]) -> Step:
    commands: list[Command] = []
    if route is not None:
        if route.reason == VENDOR_UNAVAILABLE:
            detail = ", ".join(f"{o.vendor}: {o.reason}" for o in route.options)
            return refuse(state, refusal_of(state, VENDOR_UNAVAILABLE, detail))
        if route.reason == NO_ROUTE:
            legs = ()  # no vendor has a rate for it: the route template, if any
    dial = state.dial
    if not dial and not legs:
        dial = dial_string_of(state.channel, state.config.route_template, state.number) or ""
        if not dial:
            return refuse(
                state, refusal_of(state, "no_route", "no fsbill_dial_string, no vendor and no route configured")
            )
    ch, account, rate = state.channel, state.account, state.rate
    assert account is not None and rate is not None
    commands.append(
        Reserve(
            ch.uuid,
            account.id,
            rate,
            state.number,
            legs,
            ch.caller,
            ch.var("accountcode"),
            ch.caller_id_name,
            ch.context,
            state.did,
        )
    )
    return evolve(state, phase=RESERVE, dial=dial, legs=legs), commands


def _reserved(state: CallState, result: ev.Reserved, now_us: int) -> Step:
    commands: list[Command] = []
    if state.legs and (result.refused_vendors or result.reason == VENDOR_UNAVAILABLE):
        commands.append(RoutesStale())
    if result.call is None:
        refused = evolve(refusal_of(state, result.reason), balance=Money(result.balance_micros))
        return refuse(state, refused, commands)
    call, account, rate = result.call, state.account, state.rate
    assert account is not None and rate is not None
    dial, legs = state.dial, state.legs
    if legs:
        legs = tuple(leg for leg in legs if leg.vendor not in result.refused_vendors)
        dial = ""  # the driver composes the failover bridge from the legs
    state = evolve(state, call=call, dial=dial, legs=legs, unbilled=result.reason == FREE_ON_EMPTY)
    commands += [
        Note(
            "authorized",
            {
                "uuid": call.uuid,
                "account": account.code,
                "destination": state.number,
                "prefix": rate.prefix,
                "rate": rate.rate,
                "granted_s": call.granted_s,
                "held": call.held,
                "final": call.final,
                "vendors": ",".join(leg.vendor for leg in legs) or None,
            },
        ),
        Note("accepted", {"reason": result.reason} if result.reason else {}),
        Follow((call.uuid, call.visit)),
        HoldChanged(account.currency, call.held),
    ]
    return arm_and_bridge(state, commands, now_us)


def _database_down(state: CallState, error: str, now_us: int) -> Step:
    ch, config = state.channel, state.config
    payer = state.payer
    assert payer is not None
    code = state.account.code if state.account is not None else ""
    name = code or payer.value
    commands: list[Command] = [
        Note("database_unavailable", {"uuid": ch.uuid, "account": name, "error": error, "policy": config.on_db_error})
    ]
    if config.on_db_error != "allow" or payer.by == "did":
        # an inbound call is never let through unreserved: its payer is a number's owner,
        # found only in the database
        return refuse(state, Refused("db_error", error, name), commands)
    # The operator chose availability over the invariant for outages: the call gets a short
    # FreeSWITCH-enforced grant with nothing held, and is charged once the database is back
    # (never more than the account then has; the rest is recorded as uncollected).
    destination = destination_of(ch)
    dial = dial_string_of(ch, config.route_template, destination)
    if not dial:
        return refuse(state, Refused("no_route", "no dial string", name), commands)
    call = LiveCall(
        uuid=ch.uuid,
        visit=0,  # numbered when it is written, after the outage
        rate=Rate.adhoc(Money(0)),
        granted_s=config.db_error_grant_s + config.policy.margin_s,
        held=Money(0),
        debited=Money(0),
        created_us=ch.created_us or now_us,
        hold_until_us=0,
        final=True,
    )
    # Charged later as the call named its payer: by account code, or by caller id (looked up
    # in the caller-id map when the database is back), never the caller id taken as a code.
    state = evolve(
        state,
        account=PayerAccount(0, name, 0, "", "active"),
        payer=Payer("code", code, payer.source) if code else payer,
        number=destination,
        dial=dial,
        legs=(),
        reserved=False,
        call=call,
    )
    commands += [Note("accepted", {"reason": "db_error_allowed"}), Follow((call.uuid, call.visit))]
    return arm_and_bridge(state, commands, now_us)


def arm_and_bridge(state: CallState, commands: list[Command], now_us: int) -> Step:
    call, account, policy = state.call, state.account, state.config.policy
    assert call is not None and account is not None
    offset = cutoff_offset_s(call.granted_s, policy.margin_s)
    variables = (
        ("fsbill_account", account.code),
        ("fsbill_rate", str(call.rate.rate)),
        ("fsbill_prefix", call.rate.prefix),
        ("fsbill_max_seconds", str(offset)),
        ("fsbill_result", "authorized"),
    )
    if not state.pre_answered:
        warning = warning_after_answer_s(call.granted_s, policy) if call.final else None
        commands.append(Arm(variables, offset, warning))
        if warning is not None:
            state = evolve(state, call=evolve(call, warned=True))
    else:
        # FreeSWITCH never runs on-answer actions for an answered channel: arm the cut-off now,
        # relative, bounded by the ring allowance plus the grant; it is moved to its real
        # instant when the bridge comes up.
        commands += [Arm(variables, None, None), ArmFromNow(state.config.max_ring_s + offset)]
    commands.append(Bridge(state.dial))
    state = schedule_beat(evolve(state, phase=LIVE), now_us)
    return state, commands
