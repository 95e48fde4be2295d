"""The emulator against a real FreeSWITCH 1.10.12 talking to fsbill itself (issue 26).

tests/data/fs-wire-fsbill-call.txt is one call of `fsbill bench switch` (a SIP call from sipp on
the sofia profile, bridged to a loopback echo, hung up by the caller after 0.5 s), captured
by a proxy between the switch and `fsbill serve`: fsbill's own commands (connect and its
subscription in one write, multiset, bridge, exit) and every frame the switch sent back. With
the filters of fsbill.esl.control.SUBSCRIPTION the switch sends five events and the linger
notice per call, and nothing else: what the emulator must send too for `fsbill bench calls` to
measure what a real switch costs fsbill.
"""

from __future__ import annotations

from pathlib import Path

from fsbill.esl.control import SUBSCRIPTION
from fsbill.sim import CallSpec
from fsbill.sim.captures import app_to_fs_commands, fs_to_app_frames

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "fs-wire-fsbill-call.txt"


def _events(labels: list[str]) -> list[str]:
    return [label for label in labels if label not in ("command/reply", "api/response")]


def test_the_capture_is_fsbill_subscribing_with_connect():
    commands = [text for _, text in app_to_fs_commands(CAPTURE)]
    assert commands[0] == "\n\n".join(["connect", *SUBSCRIPTION])  # one write
    frames = list(fs_to_app_frames(CAPTURE))
    replies = [f.headers.get("Reply-Text", "") for f in frames[1 : 1 + len(SUBSCRIPTION)]]
    assert [r.split(" ")[0] for r in replies] == ["+OK"] * len(SUBSCRIPTION)
    assert _events([f.label() for f in frames]) == [
        "CHANNEL_ANSWER",
        "CHANNEL_HANGUP",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_EXECUTE_COMPLETE:bridge",
        "CHANNEL_HANGUP_COMPLETE",
        "notice:linger",
        "notice:disconnect",
    ]


def test_the_emulator_sends_what_the_real_switch_sent_fsbill(switch, app_factory):
    replies: list[str] = []

    def script(c):
        c.connect()
        replies.extend(c.command(command).get("Reply-Text") for command in SUBSCRIPTION)
        c.execute("multiset", "^^|fsbill_account=bench|fsbill_rate=0.02")
        c.execute("bridge", "sofia/gateway/carrier/4930123456")
        c.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=15)
        assert c.command("exit").get("Reply-Text") == "+OK bye"
        c.eof.wait(5)

    app = app_factory(script)
    switch.place_call(app.address, CallSpec(answer_after_s=0.05, talk_s=0.5))
    conn = app.conns[0]
    assert conn.done.wait(15)
    if conn.error:
        raise conn.error
    theirs = list(fs_to_app_frames(CAPTURE))
    assert replies == [f.headers.get("Reply-Text", "") for f in theirs[1 : 1 + len(SUBSCRIPTION)]]
    # The same events in the same order. The linger notice's place differs, and both places
    # are FreeSWITCH's: its listener flushes every queued event before it looks at the channel
    # again (mod_event_socket.c read_packet), so when the hang-up's events are all queued at
    # once (a caller's BYE, as here) the notice follows CHANNEL_HANGUP_COMPLETE, and when they
    # are not (a cut-off, ../shared/fs-wire/normal.txt) it follows CHANNEL_HANGUP.
    ours, real = conn.labels(), _events([f.label() for f in theirs])
    assert [x for x in ours if x != "notice:linger"] == [x for x in real if x != "notice:linger"], ours
    assert ours.count("notice:linger") == real.count("notice:linger") == 1
