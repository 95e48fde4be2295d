"""Failover bridges in the emulator with per-leg [origination_uuid=...] (how fsbill names each
vendor's B leg): the uuid FreeSWITCH reports back in originate_causes, last_bridge_to and
CHANNEL_BRIDGE's Bridge-B-Unique-ID is the one the leg was given."""

from __future__ import annotations

from test_sim_protocol import hangup_and_exit, run

from fsbill.esl import originate_causes

U1, U2, U3 = (
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "3" * 8 + "-3333-4333-8333-" + "3" * 12,
)
FAILOVER = (
    "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: "
    f"[origination_uuid={U1}]sofia/gateway/a/4930|[origination_uuid={U2}]sofia/gateway/b/4930|"
    f"[origination_uuid={U3}]sofia/gateway/c/4930"
)


def test_first_leg_fails_second_answers(switch, app_factory):
    seen = {}

    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.command(FAILOVER)
        bridge = c.wait_event("CHANNEL_BRIDGE", timeout=10)
        seen["b_leg"] = bridge.ev("Bridge-B-Unique-ID")
        end = c.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=15)
        seen["last_bridge_to"] = end.ev("variable_last_bridge_to")
        seen["bridge_channel"] = end.ev("variable_bridge_channel")
        seen["causes"] = end.ev("variable_originate_causes")
        c.command("exit")
        c.eof.wait(5)

    record, _ = run(
        switch, app_factory, script, failover_causes=["NO_ROUTE_DESTINATION"], leg_fail_after_s=0.3, talk_s=1
    )
    assert seen["b_leg"] == U2 == seen["last_bridge_to"]
    assert seen["bridge_channel"] == "sofia/external/4930"  # sofia_glue_set_name: the profile, not the gateway
    assert seen["causes"] == f"ARRAY::{U1};NO_ROUTE_DESTINATION|:{U2};NONE"
    assert originate_causes(seen["causes"]) == ((U1, "NO_ROUTE_DESTINATION"), (U2, "NONE"))
    assert record.answered_us is not None and record.bridged_us is not None


def test_every_leg_fails(switch, app_factory):
    seen = {}

    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.command(FAILOVER)
        done = c.wait_for(lambda f: f.event_name == "CHANNEL_EXECUTE_COMPLETE" and f.ev("Application") == "bridge")
        seen["disposition"] = done.ev("variable_originate_disposition")
        seen["causes"] = done.ev("variable_originate_causes")
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: USER_BUSY")
        hangup_and_exit(c)

    record, _ = run(
        switch,
        app_factory,
        script,
        failover_causes=["USER_BUSY", "NO_ANSWER"],
        fail_cause="CALL_REJECTED",
        answer_after_s=0.2,
    )
    assert seen["disposition"] == "CALL_REJECTED"
    assert originate_causes(seen["causes"]) == ((U1, "USER_BUSY"), (U2, "NO_ANSWER"), (U3, "CALL_REJECTED"))
    assert record.answered_us is None


def test_single_target_keeps_a_plain_value(switch, app_factory):
    seen = {}

    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.command(
            "sendmsg\ncall-command: execute\nexecute-app-name: bridge\n"
            f"execute-app-arg: [origination_uuid={U1}]sofia/gateway/a/4930"
        )
        end = c.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=15)
        seen["causes"] = end.ev("variable_originate_causes")
        c.command("exit")
        c.eof.wait(5)

    run(switch, app_factory, script, talk_s=0.5)
    assert seen["causes"] == f"{U1};NONE"
