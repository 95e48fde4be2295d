"""fsbill.core.frozen.evolve: the same value as dataclasses.replace, for the core's frozen values."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsbill.core.call import Channel
from fsbill.core.callstate import CallState
from fsbill.core.frozen import evolve
from fsbill.core.money import Money
from fsbill.core.rating import Rate, RatingError


def _state() -> CallState:
    channel = Channel("uuid-1", "15551234", "4930123456", 1_000_000, variables={"a": "b"})
    return CallState(phase="finding_payer", channel=channel, pre_answered=False, config=None)  # type: ignore[arg-type]


@given(phase=st.text(max_size=12), wake=st.none() | st.integers(), unbilled=st.booleans())
def test_evolve_makes_what_replace_makes(phase, wake, unbilled):
    state = _state()
    changed = evolve(state, phase=phase, wake_us=wake, unbilled=unbilled)
    assert changed == dataclasses.replace(state, phase=phase, wake_us=wake, unbilled=unbilled)
    assert type(changed) is CallState
    assert state.phase == "finding_payer" and state.wake_us is None  # the original is untouched


def test_evolve_stays_frozen_and_shares_unchanged_fields():
    state = _state()
    changed = evolve(state, phase="rating")
    assert changed.channel is state.channel
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.phase = "live"  # type: ignore[misc]


def test_evolve_refuses_a_field_the_class_does_not_have():
    with pytest.raises(TypeError, match="CallState has no field no_such"):
        evolve(_state(), no_such=1)


def test_a_class_that_checks_its_fields_still_checks_them():
    # Rate validates in __post_init__: evolve goes through dataclasses.replace for it
    rate = Rate("49", Money.parse("0.10"))
    with pytest.raises(RatingError, match="increments"):
        evolve(rate, increment_s=0)
    assert evolve(rate, increment_s=6) == dataclasses.replace(rate, increment_s=6)
