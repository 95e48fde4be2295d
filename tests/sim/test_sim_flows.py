"""Call flows a real dialplan takes, as the emulated FreeSWITCH plays them over TCP.

Each test names the FreeSWITCH source function the modelled behaviour follows (issue 12's
emulator items, issue 16's failover bridge).
"""

from __future__ import annotations

from urllib.parse import unquote

from fsbill.sim import CallSpec, Switch

BRIDGE = "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: sofia/gateway/carrier/4930123456"


def run(switch, app_factory, script, **spec):
    app = app_factory(script)
    spec.setdefault("answer_after_s", 0.4)
    record = switch.place_call(app.address, CallSpec(**spec))
    for conn in app.conns:
        assert conn.done.wait(10)
        if conn.error:
            raise conn.error
    return record, app.conns


def start(c, *commands):
    c.connect()
    c.command("myevents")
    c.command("linger")
    for command in commands:
        c.command(command)


def hangup_and_exit(c, timeout=15):
    c.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=timeout)
    c.command("exit")
    c.eof.wait(5)


# -- d. the scheduler: whole seconds, up to 0.5 s late, past instants taken as relative ----------
def test_scheduler_runs_late_and_takes_a_past_instant_as_relative(clock, app_factory):
    """switch_scheduler.c: switch_scheduler_add_task_ex (`if (task_runtime < now) { repeat =
    task_runtime; task_runtime += now; }`), switch_scheduler_task_thread (a pass, then
    switch_queue_pop_timeout(..., 500000)). With the deterministic knob every task runs exactly
    0.49 s after its epoch second; a cut-off at an instant already past never fires."""
    switch = Switch(clock, scheduler_late_s=0.49)

    def script(c):
        start(c)
        c.execute("answer")
        c.wait_event("CHANNEL_ANSWER")
        now_s = clock.now_us() // 1_000_000
        assert c.command(f"api sched_hangup {now_s - 30} {c.uuid} ALLOTTED_TIMEOUT").body == b"+OK\n"
        c.execute("sched_hangup", f"{now_s - 20} USER_BUSY")  # mod_dptools sched_hangup_function
        assert c.command(f"api sched_hangup +2 {c.uuid} NORMAL_CLEARING").body == b"+OK\n"
        hangup_and_exit(c)

    try:
        record, _ = run(switch, app_factory, script)
    finally:
        switch.close()
    by_cause = {arg: (runtime, at_us) for _, arg, runtime, at_us in record.scheduled_tasks}
    for cause in ("ALLOTTED_TIMEOUT", "USER_BUSY"):
        runtime, at_us = by_cause[cause]
        assert runtime > 2 * (at_us // 1_000_000) - 31  # now + a past epoch: decades away
    assert [(kind, arg) for kind, arg, _ in record.fired_tasks] == [("sched_hangup", "NORMAL_CLEARING")]
    runtime, at_us = by_cause["NORMAL_CLEARING"]
    fired_us = record.fired_tasks[0][2]
    assert fired_us == runtime * 1_000_000 + 490_000
    assert record.hangup_cause == "NORMAL_CLEARING" and record.ended_us == fired_us


def test_scheduler_default_runs_within_half_a_second_of_the_epoch_second(switch, app_factory, clock):
    """switch_scheduler_task_thread without the knob: passes 0.5 s apart from the last add,
    so an absolute `sched_hangup T` runs in [T, T + 0.5 s]."""

    def script(c):
        start(c)
        c.execute("answer")
        c.wait_event("CHANNEL_ANSWER")
        c.command(f"api sched_hangup {clock.now_us() // 1_000_000 + 2} {c.uuid} ALLOTTED_TIMEOUT")
        hangup_and_exit(c)

    record, _ = run(switch, app_factory, script)
    (_, _, runtime, _), fired = record.scheduled_tasks[-1], record.fired_tasks[-1]
    assert 0 <= fired[2] - runtime * 1_000_000 <= 500_000
    assert record.ended_by == "sched_hangup"


# -- a. a channel answered before it reaches the socket (an IVR answered it) -------------------------
def test_pre_answered_channel_arrives_answered_and_bridges_later(switch, app_factory):
    """switch_channel_perform_mark_answered returns at once on an answered channel, so
    execute_on_answer set by the app never runs; the connect reply carries the answer time
    (Caller-Channel-Answered-Time, variable_answer_epoch/_uepoch: measured on 1.10.12);
    the bridge comes up when the B leg answers (switch_ivr_multi_threaded_bridge)."""

    def script(c):
        reply = c.connect()
        c.answered = unquote(reply.get("Caller-Channel-Answered-Time"))
        c.answer_uepoch = unquote(reply.get("variable_answer_uepoch"))
        c.answer_state = reply.get("Answer-State")
        c.command("myevents")
        c.command("linger")
        c.execute("set", "execute_on_answer=sched_hangup +1 ALLOTTED_TIMEOUT")
        c.command(BRIDGE)
        bridge = c.wait_event("CHANNEL_BRIDGE")
        c.bridged = bridge.ev("Caller-Channel-Bridged-Time")
        c.last_bridge_to = bridge.ev("Bridge-B-Unique-ID")
        hangup_and_exit(c)

    record, (conn,) = run(switch, app_factory, script, answered_before_s=30.0, answer_after_s=2.0, talk_s=3.0)
    assert conn.answer_state == "answered"
    assert int(conn.answered) == record.answered_us == int(conn.answer_uepoch)
    assert int(unquote(conn.connect_reply.get("variable_answer_epoch"))) == record.answered_us // 1_000_000
    assert record.bridged_us - record.answered_us >= 30_000_000
    assert int(conn.bridged) == record.bridged_us
    labels = conn.labels()
    assert "CHANNEL_ANSWER" not in labels  # answered long before the socket
    assert "CHANNEL_EXECUTE:sched_hangup" not in labels and not record.fired_tasks
    assert record.ended_by == "caller" and 2.9 <= float(record.talk_s) <= 3.2  # talk_s counts from the bridge
    assert record.variables["last_bridge_to"] == conn.last_bridge_to
    assert record.variables["bridge_epoch"] == str(record.bridged_us // 1_000_000)
    assert int(record.variables["billsec"]) >= 32  # FreeSWITCH bills from the A leg's answer
