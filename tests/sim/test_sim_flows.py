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


# -- b. the same channel entering the socket twice -----------------------------------------------------
TOPUP = {"topup": ["playback ivr/topup.wav", "transfer 4915112345678 XML public"]}


def visit_of(conn):
    return int(unquote(conn.connect_reply.get("Caller-Profile-Index")))


def test_same_channel_enters_the_socket_twice(switch, app_factory, clock):
    """switch_ivr_session_transfer (a new caller profile, CS_ROUTING → CS_EXECUTE), then
    mod_event_socket.c socket_function again for the same session: a second outbound
    connection with the same Unique-ID. The first listener is not touched by the transfer
    (listener_run keeps it until the channel is gone), so it sees the second visit too."""

    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        if visit_of(c) == 1:
            c.execute("set", "execute_on_answer=sched_transfer +2 topup XML public")
            c.command(BRIDGE)
            c.wait_event("CHANNEL_UNBRIDGE")
            hangup_and_exit(c, timeout=20)  # still connected: gets the end of the second visit
        else:
            c.command(BRIDGE)
            c.wait_event("CHANNEL_BRIDGE")
            clock.sleep(1)
            c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
            hangup_and_exit(c)

    record, conns = run(switch, app_factory, script, dialplan=TOPUP)
    first, second = sorted(conns, key=visit_of)
    assert first.uuid == second.uuid == record.uuid
    assert visit_of(second) == 3  # profile 2 was the top-up menu
    assert unquote(second.connect_reply.get("Caller-Destination-Number")) == "4915112345678"
    history = unquote(second.connect_reply.get("variable_transfer_history"))
    assert history.startswith("ARRAY::") and ":bl_xfer:topup/public/XML|:" in history
    assert len(record.connects) == 2 and [ext for _, ext in record.transfers] == ["topup", "4915112345678"]
    assert ("playback", "ivr/topup.wav") in record.applications
    assert len(record.unbridges) == 2 and record.unbridges[0][1] < record.unbridges[1][0]
    assert first.labels().count("CHANNEL_BRIDGE") == 2  # the first socket saw the second bridge
    assert second.labels().count("CHANNEL_BRIDGE") == 1
    assert record.ended_by == "sched_transfer" and record.hangup_by == "app_hangup"


def test_closing_the_first_socket_ends_the_second_visits_park(switch, app_factory, clock):
    """listener_run clears CF_CONTROLLED when any listener of the channel ends, and
    switch_ivr_park loops only while CF_CONTROLLED: the first visit's socket closing while
    the second visit is parked returns the second socket app, and the dialplan goes on after
    `socket` (respond 503 on an answered channel, then the end of the dialplan)."""

    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        if visit_of(c) == 1:
            c.execute("set", "execute_on_answer=sched_transfer +1 topup XML public")
            c.command(BRIDGE)
            c.wait_for(lambda f: f.event_name == "CHANNEL_PARK" and f.ev("Caller-Profile-Index") == "3", timeout=20)
            c.command("exit")
            c.eof.wait(5)
        else:
            c.wait_event("CHANNEL_HANGUP", timeout=20)
            c.command("exit")
            c.eof.wait(5)

    record, conns = run(switch, app_factory, script, dialplan=TOPUP)
    assert len(record.connects) == 2
    assert record.responded == "503 Service Unavailable" and record.hangup_by == "peer_closed"


# -- c. sched_transfer: the bridge ends, the caller moves on, the socket stays ------------------------
def test_transfer_cutoff_keeps_the_socket_and_a_hangup_then_ends_it(switch, app_factory):
    """switch_ivr_schedule_transfer → switch_ivr_session_transfer: the bridge breaks
    (CHANNEL_UNBRIDGE, the bridge's CHANNEL_EXECUTE_COMPLETE), switch_ivr_park returns on
    CF_TRANSFER (the socket app completes), the channel runs the cut-off extension; the
    listener is untouched, so the app still gets events and can still act: a `hangup` sent
    then ends the announcement (measured: BYE 20 ms after the transfer)."""

    def script(c):
        start(
            c,
            "sendmsg\ncall-command: execute\nexecute-app-name: set\n"
            "execute-app-arg: execute_on_answer=sched_transfer +2 fsbill_cutoff XML default",
        )
        c.command(BRIDGE)
        c.wait_for(lambda f: f.event_name == "CHANNEL_EXECUTE" and f.ev("Application") == "playback")
        assert c.command(f"api uuid_getvar {c.uuid} last_sched_id").body.isdigit()
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        hangup_and_exit(c)

    record, (conn,) = run(switch, app_factory, script)
    labels = conn.labels()
    assert labels.index("CHANNEL_UNBRIDGE") < labels.index("CHANNEL_EXECUTE_COMPLETE:bridge")
    assert labels.index("CHANNEL_EXECUTE_COMPLETE:socket") < labels.index("CHANNEL_EXECUTE:playback")
    [(transfer_us, ext)] = record.transfers
    assert ext == "fsbill_cutoff" and record.ended_by == "sched_transfer" and record.hangup_by == "app_hangup"
    assert record.ended_us - transfer_us < switch.announce_s * 1_000_000 / 2  # cut short
    assert record.unbridged_us <= transfer_us


def test_transfer_cutoff_plays_the_announcement_to_its_end_when_left_alone(switch, app_factory):
    """The cut-off extension (dialplan/fsbill_cutoff.xml) runs by itself: the announcement
    for the Switch's announce_s, then hangup with its cause."""

    def script(c):
        start(
            c,
            "sendmsg\ncall-command: execute\nexecute-app-name: set\n"
            "execute-app-arg: execute_on_answer=sched_transfer +2 fsbill_cutoff XML default",
        )
        c.command(BRIDGE)
        hangup_and_exit(c)

    record, _ = run(switch, app_factory, script)
    [(transfer_us, _)] = record.transfers
    assert record.hangup_by == "app_hangup" and record.hangup_cause == switch.transfer_hangup_cause
    assert record.ended_us - transfer_us >= switch.announce_s * 1_000_000 * 0.9


# -- issue 16: a failover bridge a|b|c -----------------------------------------------------------------
FAILOVER = "|".join(f"sofia/gateway/{gw}/4930123456" for gw in ("v1", "v2", "v3"))


def test_failover_bridge_reports_every_leg_as_switch_ivr_originate_does(switch, app_factory):
    """switch_ivr_originate: each `|` attempt pushes `uuid;CAUSE` onto originate_causes
    (ARRAY::a|:b once there are two, switch_event.c) and `uuid;name;number` onto
    originated_legs; the leg that answers gets NONE and the A leg's originate_disposition /
    DIALSTATUS SUCCESS; switch_ivr_multi_threaded_bridge sets last_bridge_to and
    bridge_channel (sofia_glue_set_name: `sofia/<gateway's profile>/NUM`)."""

    def script(c):
        start(c)
        c.command(BRIDGE.replace("sofia/gateway/carrier/4930123456", FAILOVER))
        c.bridge = c.wait_event("CHANNEL_BRIDGE")
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        hangup_and_exit(c)

    record, (conn,) = run(
        switch, app_factory, script, failover_causes=["USER_BUSY", "NORMAL_TEMPORARY_FAILURE"], answer_after_s=0.5
    )
    hc = next(f for f in conn.frames if f.event_name == "CHANNEL_HANGUP_COMPLETE")
    causes = hc.ev("variable_originate_causes")
    assert causes.startswith("ARRAY::")
    entries = [e.split(";") for e in causes[len("ARRAY::") :].split("|:")]
    assert [cause for _, cause in entries] == ["USER_BUSY", "NORMAL_TEMPORARY_FAILURE", "NONE"]
    assert entries[2][0] == hc.ev("variable_last_bridge_to") == conn.bridge.ev("Bridge-B-Unique-ID")
    assert hc.ev("Other-Leg-Unique-ID") == entries[2][0]
    assert hc.ev("variable_bridge_channel") == "sofia/external/4930123456"
    assert hc.ev("variable_originate_disposition") == "SUCCESS" and hc.ev("variable_DIALSTATUS") == "SUCCESS"
    assert len(hc.ev("variable_originated_legs")[len("ARRAY::") :].split("|:")) == 3
    assert record.failed_legs == [
        ("sofia/gateway/v1/4930123456", "USER_BUSY"),
        ("sofia/gateway/v2/4930123456", "NORMAL_TEMPORARY_FAILURE"),
    ]
    assert record.bridged_to == "sofia/gateway/v3/4930123456"


def test_failover_bridge_that_fails_everywhere(switch, app_factory):
    """A gateway refused before a channel exists (mod_sofia sofia_outgoing_channel:
    GATEWAY_DOWN) leaves no originate_causes entry; after the last failure
    originate_disposition is the cause, DIALSTATUS its mapping (NO_ANSWER → NOANSWER) and
    audio_bridge_function sets originate_failed_cause; the channel stays parked."""

    def script(c):
        start(c)
        c.command(BRIDGE.replace("sofia/gateway/carrier/4930123456", FAILOVER))
        c.complete = c.wait_for(
            lambda f: f.event_name == "CHANNEL_EXECUTE_COMPLETE" and f.ev("Application") == "bridge"
        )
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        hangup_and_exit(c)

    record, (conn,) = run(
        switch, app_factory, script, failover_causes=["GATEWAY_DOWN", "USER_BUSY"], answer_after_s=None, ring_s=1.0
    )
    done = conn.complete
    entries = done.ev("variable_originate_causes")[len("ARRAY::") :].split("|:")
    assert [e.split(";")[1] for e in entries] == ["USER_BUSY", "NO_ANSWER"]
    assert done.ev("variable_originate_disposition") == "NO_ANSWER" and done.ev("variable_DIALSTATUS") == "NOANSWER"
    assert done.ev("variable_originate_failed_cause") == "NO_ANSWER"
    assert record.answered_us is None and record.bridge_failed == "NO_ANSWER"


# -- e. mod_nibblebill next to fsbill ------------------------------------------------------------------
def nibble_switch(clock, **config):
    from fsbill.sim.nibblebill import Nibblebill

    return Switch(clock, nibblebill=Nibblebill(balances={"acme": 10.0}, **config))


NIBBLE = {"nibble_rate": "6.00", "nibble_account": "acme"}


def test_nibblebill_bills_a_channel_that_still_carries_its_variables_at_hangup(clock, app_factory):
    """mod_nibblebill.c: the variables were set by the dialplan (after the CS_EXECUTE state
    handler ran sched_billing), so no heartbeat; process_hangup (on_hangup) bills the call
    from times->answered in doubles, then bills the rounding excess (0 here)."""
    switch = nibble_switch(clock, global_heartbeat=1)

    def script(c):
        start(c, BRIDGE)
        hangup_and_exit(c)

    try:
        record, _ = run(switch, app_factory, script, variables=dict(NIBBLE), talk_s=2.0)
    finally:
        switch.close()
    assert not record.heartbeats
    (at_us, account, amount), (_, _, excess) = record.nibblebill_debits
    assert account == "acme" and excess == "0.000000"
    expected = 6.0 / 1_000_000 / 60 * (record.ended_us - record.answered_us)
    assert amount == f"{expected:f}" and record.variables["nibble_total_billed"] == amount
    assert abs(switch.nibblebill.balances["acme"] - (10.0 - expected)) < 1e-9
    assert record.variables["nibble_current_balance"] == f"{10.0 - expected:f}"


def test_nibblebill_heartbeat_bills_until_the_variables_go(clock, app_factory):
    """Variables present before the dialplan (directory): on_execute → sched_billing →
    switch_core_session_enable_heartbeat; with no media yet that is a scheduler task in the
    channel's group (switch_core_session_sched_heartbeat), whose SESSION_HEARTBEAT the module's
    event_handler bills (do_billing) once the channel is answered. Unsetting the variables
    stops it: later heartbeats and the hangup bill nothing."""
    switch = nibble_switch(clock, global_heartbeat=1)

    def script(c):
        start(c, BRIDGE)
        c.wait_event("CHANNEL_BRIDGE")
        clock.sleep(3)
        c.execute("unset", "nibble_rate")
        c.strip_us = clock.now_us()
        clock.sleep(2)
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        hangup_and_exit(c)

    try:
        record, (conn,) = run(switch, app_factory, script, directory_variables=dict(NIBBLE))
    finally:
        switch.close()
    debits = record.nibblebill_debits
    assert len(record.heartbeats) >= 5 and 2 <= len(debits) <= 4
    assert all(at <= conn.strip_us for at, _, _ in debits)  # nothing after the variables went
    assert all(hb >= record.heartbeats[0] for hb in record.heartbeats)
    total = sum(float(a) for _, _, a in debits)
    assert record.variables["nibble_total_billed"] == f"{total:f}"


def test_nibblebill_never_bills_a_channel_stripped_before_answer(clock, app_factory):
    """The same channel with its nibble_* variables removed before the bridge answers (what
    fsbill must do): heartbeats still fire, do_billing finds no variables, nothing is billed.
    `sched_del <uuid>` (fsbill's way of moving a cut-off) also deletes the heartbeat task, as
    switch_scheduler_del_task_group removes every task of the group."""
    switch = nibble_switch(clock, global_heartbeat=1)

    def script(c):
        start(c, "sendmsg\ncall-command: execute\nexecute-app-name: unset\nexecute-app-arg: nibble_rate")
        c.command("sendmsg\ncall-command: execute\nexecute-app-name: unset\nexecute-app-arg: nibble_account")
        c.command(BRIDGE)
        c.wait_event("CHANNEL_BRIDGE")
        clock.sleep(2.5)
        assert c.command(f"api sched_del {c.uuid}").body == b"+OK Deleted: 1\n"
        c.deleted_us = clock.now_us()
        clock.sleep(2)
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        hangup_and_exit(c)

    try:
        record, (conn,) = run(switch, app_factory, script, directory_variables=dict(NIBBLE))
    finally:
        switch.close()
    assert record.nibblebill_debits == [] and switch.nibblebill.balances["acme"] == 10.0
    assert len(record.heartbeats) >= 2 and all(hb <= conn.deleted_us for hb in record.heartbeats)


# -- the Switch's live-channel API (for an inbound event socket) ----------------------------------------
def test_live_channel_api_and_a_channel_outliving_its_socket(switch, app_factory, clock):
    """mod_event_socket.c listener_run: a closed outbound socket only clears CF_CONTROLLED;
    a bridged channel goes on (fs-wire/drop.txt). Through the Switch a test (or an inbound
    socket) still sees it (live_channel), gets its events (subscribe, as switch_event_bind)
    and can end it (sendmsg, as `sendmsg <uuid>` on any socket)."""
    seen = []
    sub = switch.subscribe(lambda uuid, name, headers: seen.append((uuid, name)))

    def script(c):
        start(c, BRIDGE)
        c.wait_event("CHANNEL_BRIDGE")
        view = switch.live_channel(c.uuid)
        assert view.up and view.in_bridge and view.socket_connected and view.bridged_us and view.visits == 1
        assert view.bridge_uuid == view.variables["bridge_uuid"] and c.uuid in switch.live_uuids()
        c.close()  # abruptly, no resume, no linger left to honour

    app = app_factory(script)
    greenlet = switch.start_call(app.address, CallSpec(answer_after_s=0.4))
    assert app_conns_done(app)
    uuid = app.conns[0].uuid
    for _ in range(100):
        view = switch.live_channel(uuid)
        if view is not None and not view.socket_connected:
            break
        clock.sleep(0.1)
    assert view.up and view.in_bridge and not view.socket_connected  # the call goes on
    assert switch.sendmsg(uuid, {"call-command": "hangup", "hangup-cause": "MANAGER_REQUEST"})
    record = greenlet.get(timeout=10)
    sub.cancel()
    assert record.hangup_cause == "MANAGER_REQUEST" and record.socket_closed_by_app_us is not None
    assert switch.live_channel(uuid) is None and not switch.sendmsg(uuid, {"call-command": "hangup"})
    names = [name for u, name in seen if u == uuid]
    assert names.index("CHANNEL_BRIDGE") < names.index("CHANNEL_HANGUP") < names.index("CHANNEL_HANGUP_COMPLETE")


def app_conns_done(app, timeout=10.0):
    import gevent

    with gevent.Timeout(timeout, False):
        while not app.conns:
            gevent.sleep(0.01)
        app.conns[0].done.wait()
        return app.conns[0].error is None
    return False
