"""The emulated inbound event socket (mod_event_socket.c listener_run / parse_command /
event_handler) and mod_json_cdr's posts, over real TCP."""

from __future__ import annotations

import json
import socket
from urllib.parse import unquote

import gevent
import pytest
from gevent.pywsgi import WSGIServer
from scripted import Conn, read_frame

from fsbill.sim import CallSpec
from fsbill.sim.inbound import InboundServer, JsonCdrPoster

BRIDGE = "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: sofia/gateway/carrier/4930123456"


@pytest.fixture
def inbound(switch):
    server = InboundServer(switch, password="s3cret")
    server.start()
    yield server
    server.close()


def dial(server: InboundServer) -> tuple[Conn, object]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    conn = Conn(sock)
    first = read_frame(conn.stream)
    conn.start_reading()
    return conn, first


def test_auth_request_then_password(inbound):
    conn, first = dial(inbound)
    assert first.raw == b"Content-Type: auth/request\n\n"
    assert conn.command("api status").get("Reply-Text") == "-ERR command not found"
    assert conn.command("auth s3cret").get("Reply-Text") == "+OK accepted"
    assert conn.command("api status").body.startswith(b"UP ")
    assert conn.command("linger").get("Reply-Text") == "-ERR not controlling a session"
    assert conn.command("event plain NO_SUCH_THING").get("Reply-Text") == "-ERR no keywords supplied"
    assert conn.command("event plain CHANNEL_ANSWER").get("Reply-Text") == "+OK event listener enabled plain"
    assert conn.command("nixevent CHANNEL_ANSWER").get("Reply-Text") == "+OK events nixed"
    assert conn.command("noevents").get("Reply-Text") == "+OK no longer listening for events"
    assert conn.command("noevents").get("Reply-Text") == "-ERR not listening for events"
    assert conn.command("filter Unique-ID abc").get("Reply-Text") == "+OK filter added. [Unique-ID]=[abc]"
    assert conn.command("filter delete Unique-ID abc").get("Reply-Text") == "+OK filter deleted. [Unique-ID][abc]"
    assert conn.command("exit").get("Reply-Text") == "+OK bye"
    assert conn.eof.wait(5)
    assert conn.frames[-1].ctype == "text/disconnect-notice"
    assert conn.frames[-1].body.startswith(b"Disconnected, goodbye.")


def test_wrong_password_is_refused_and_closed(inbound):
    conn, _ = dial(inbound)
    assert conn.command("auth ClueCon").get("Reply-Text") == "-ERR invalid"
    assert conn.eof.wait(5)
    assert conn.frames[-1].ctype == "text/disconnect-notice"


def test_bgapi_answers_with_a_job_then_a_background_job_event(inbound):
    conn, _ = dial(inbound)
    conn.command("auth s3cret")
    conn.command("event plain BACKGROUND_JOB")
    reply = conn.command("bgapi uuid_exists 00000000-0000-0000-0000-000000000000")
    job = reply.get("Job-UUID")
    assert reply.get("Reply-Text") == f"+OK Job-UUID: {job}"
    event = conn.wait_event("BACKGROUND_JOB")
    assert event.ev("Job-UUID") == job
    assert event.ev("Job-Command") == "uuid_exists"
    assert event.body.endswith(b"Content-Length: 5\n\nfalse")


def test_a_call_outlives_its_outbound_socket_and_is_seen_through_the_inbound_one(switch, app_factory, inbound):
    """drop.txt: the app's socket dies mid-call; the bridged call goes on to its cut-off. An
    inbound listener filtering on the call's uuid still sees it, its variables, its end."""
    uuids = []

    def app(c):
        c.connect()
        uuids.append(c.uuid)
        c.command("myevents")
        c.execute("set", "execute_on_answer=sched_hangup +6 ALLOTTED_TIMEOUT")
        c.execute("set", "fsbill_account=acme")
        c.command(BRIDGE)
        c.wait_event("CHANNEL_ANSWER")
        c.close()

    application = app_factory(app)
    call = switch.start_call(application.address, CallSpec(answer_after_s=0.5))
    with gevent.Timeout(10):
        while not uuids or not application.conns or not application.conns[0].done.is_set():
            gevent.sleep(0.02)
    uuid = uuids[0]
    conn, _ = dial(inbound)
    conn.command("auth s3cret")
    assert conn.command(f"api uuid_exists {uuid}").body == b"true"
    dump = conn.command(f"api uuid_dump {uuid}").body.decode()
    fields = dict(line.split(": ", 1) for line in dump.splitlines() if ": " in line)
    assert fields["Unique-ID"] == uuid and fields["variable_fsbill_account"] == "acme"
    assert int(fields["Caller-Channel-Answered-Time"]) > 0
    assert conn.command("event plain CHANNEL_HANGUP_COMPLETE").get("Reply-Text").startswith("+OK")
    assert conn.command(f"filter Unique-ID {uuid}").get("Reply-Text").startswith("+OK filter added")
    end = conn.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=15)
    rec = call.get(timeout=10)
    assert end.ev("Unique-ID") == uuid
    assert end.ev("Hangup-Cause") == "ALLOTTED_TIMEOUT" == rec.hangup_cause
    assert int(end.ev("variable_answer_uepoch")) == rec.answered_us
    assert int(end.ev("variable_end_uepoch")) == rec.ended_us
    assert conn.command(f"api uuid_exists {uuid}").body == b"false"


def test_filters_pass_only_matching_events(switch, app_factory, inbound):
    conn, _ = dial(inbound)
    conn.command("auth s3cret")
    conn.command("event plain CHANNEL_HANGUP_COMPLETE")
    conn.command("filter Unique-ID not-this-one")

    def app(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        c.wait_event("CHANNEL_HANGUP_COMPLETE")
        c.command("exit")

    application = app_factory(app)
    rec = switch.place_call(application.address, CallSpec())
    assert rec.hangup_cause == "NORMAL_CLEARING"
    gevent.sleep(0.2)
    assert [f for f in conn.frames if f.event_name] == []
    conn.command("filter delete Unique-ID not-this-one")
    rec = switch.place_call(application.address, CallSpec())
    assert conn.wait_event("CHANNEL_HANGUP_COMPLETE").ev("Unique-ID") == rec.uuid


def test_drop_resets_every_connection(inbound):
    conn, _ = dial(inbound)
    conn.command("auth s3cret")
    assert inbound.connections == 1
    inbound.drop()
    assert conn.eof.wait(5)
    conn2, _ = dial(inbound)
    assert conn2.command("auth s3cret").get("Reply-Text") == "+OK accepted"


class _Collector:
    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[dict] = []
        self.fail_first = fail_first

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read()
        self.requests.append(
            {
                "path": environ["PATH_INFO"],
                "query": environ.get("QUERY_STRING", ""),
                "auth": environ.get("HTTP_AUTHORIZATION", ""),
                "type": environ.get("CONTENT_TYPE", ""),
                "agent": environ.get("HTTP_USER_AGENT", ""),
                "body": body,
            }
        )
        if len(self.requests) <= self.fail_first:
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]


def test_json_cdr_posts_with_basic_auth_and_retries(switch, app_factory, tmp_path):
    collector = _Collector(fail_first=1)
    http = WSGIServer(("127.0.0.1", 0), collector, log=None)
    http.start()
    poster = JsonCdrPoster(
        switch, f"http://127.0.0.1:{http.server_port}/cdr", cred="fs:pw", retries=2, delay_s=0.05, err_log_dir=tmp_path
    )

    def app(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.execute("set", "fsbill_note=a b&c")
        c.command(BRIDGE)
        c.wait_event("CHANNEL_ANSWER")
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        c.wait_event("CHANNEL_HANGUP_COMPLETE")
        c.command("exit")

    try:
        rec = switch.place_call(app_factory(app).address, CallSpec(answer_after_s=0.3))
        poster.wait()
        assert [p.status for p in poster.posts] == [503, 200]
        first, second = collector.requests
        assert first["body"] == second["body"]
        assert second["path"] == "/cdr" and second["query"] == f"uuid={rec.uuid}"
        assert second["type"] == "application/json" and second["agent"] == "freeswitch-json/1.0"
        assert second["auth"] == "Basic ZnM6cHc="
        cdr = json.loads(second["body"])
        assert cdr["variables"]["uuid"] == rec.uuid
        assert cdr["variables"]["fsbill_note"] == "a%20b%26c"  # encode-values: on by default
        assert unquote(cdr["variables"]["fsbill_note"]) == "a b&c"
        assert int(cdr["variables"]["answer_uepoch"]) == rec.answered_us
        assert int(cdr["variables"]["end_uepoch"]) == rec.ended_us
        assert cdr["callflow"][0]["times"]["answered_time"] == str(rec.answered_us)
        assert poster.backed_up == []
    finally:
        poster.close()
        http.stop()


def test_json_cdr_that_never_gets_through_is_kept_on_disk(switch, app_factory, tmp_path):
    poster = JsonCdrPoster(switch, "http://127.0.0.1:9/cdr", retries=1, delay_s=0.01, err_log_dir=tmp_path)

    def app(c):
        c.connect()
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        c.eof.wait(5)

    try:
        rec = switch.place_call(app_factory(app).address, CallSpec())
        poster.wait()
        assert [p.status for p in poster.posts] == [0, 0]
        assert poster.backed_up == [tmp_path / f"{rec.uuid}.cdr.json"]
        assert json.loads(poster.backed_up[0].read_text())["variables"]["uuid"] == rec.uuid
    finally:
        poster.close()
