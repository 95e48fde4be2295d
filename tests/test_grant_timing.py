"""Slice, heartbeat, margin and warning together: every combination that can cut off a call
that still has money is refused by config validation, with the arithmetic in the message
(the condition: fsbill.core.grant, funded_call_slack_s). Measured before: slice_s 10 with
heartbeat_s 10 cut a call with 28.00 left at 8.6 s."""

from __future__ import annotations

import pytest
from rig import Rig

from fsbill.config import load_settings
from fsbill.core.grant import extend_below, funded_call_slack_s
from fsbill.errors import ConfigError


def _load(tmp_path, text: str):
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(str(path))


def test_the_defaults_leave_room():
    assert funded_call_slack_s(120, 10, 1, 60) == 81 - 1 - 3 - 10
    assert extend_below(120, 1, 60, 10) == 81


@pytest.mark.parametrize(
    "accepted, refused",
    [
        # heartbeat 10, margin 1, warning 60: slice_s >= heartbeat_s + margin_s + 3
        ("slice_s: 14\nheartbeat_s: 10\n", "slice_s: 13\nheartbeat_s: 10\n"),
        ("slice_s: 20\nheartbeat_s: 16\n", "slice_s: 20\nheartbeat_s: 17\n"),
        # a wider margin takes from the same room
        (
            "slice_s: 20\nheartbeat_s: 10\ncutoff: {margin_s: 7}\n",
            "slice_s: 20\nheartbeat_s: 10\ncutoff: {margin_s: 8}\n",
        ),
        # no warning, one-second heartbeats: extend_below = max(slice_s // 2, 0 + 1 + 2) binds
        (
            "slice_s: 10\nheartbeat_s: 1\ncutoff: {warning_s: 0}\n",
            "slice_s: 9\nheartbeat_s: 1\ncutoff: {warning_s: 0}\n",
        ),
    ],
)
def test_the_boundary_both_ways(tmp_path, accepted, refused):
    _load(tmp_path, accepted)
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, refused)
    message = str(info.value)
    assert message.startswith("slice_s: ") and "can cut off calls that still have money" in message
    assert "min(slice_s, extend_below) - margin_s - 3 = min(" in message and "Use slice_s >= " in message


def test_the_measured_case_is_refused_with_its_arithmetic(tmp_path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "slice_s: 10\nheartbeat_s: 10\n")
    message = str(info.value)
    assert "max(5, 60 + 1 + 20) = 81" in message and "min(10, 81) - 1 - 3 = 6, and heartbeat_s is 10" in message
    assert message.endswith("Use slice_s >= 14 or heartbeat_s <= 6")
    # the suggested fixes are themselves accepted
    _load(tmp_path, "slice_s: 14\nheartbeat_s: 10\n")
    _load(tmp_path, "slice_s: 10\nheartbeat_s: 6\n")


@pytest.mark.timeout(60)
def test_a_funded_call_is_not_cut_with_the_accepted_boundary_config(sqlite_url):
    """slice_s 14 with heartbeat_s 10 (the least slice accepted): a call with money for far more
    than it talks is extended every time and ends when the caller hangs up."""
    rig = Rig(sqlite_url, time_scale=10, slice_s=14, heartbeat_s=10)
    try:
        rig.account("acme", "28.00")
        rec = rig.call(talk_s=60.0)
        [cdr] = rig.settled(1)
        assert cdr.result != "cut_off" and rec.hangup_cause != "ALLOTTED_TIMEOUT", (cdr, rec.scheduled_tasks)
        assert 59 <= (rec.ended_us - rec.answered_us) / 1e6 <= 62
    finally:
        rig.close()
