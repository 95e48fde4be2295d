"""The CDR intake against malformed and hostile posts, over real HTTP: every one is a 400 (or
413), never a 500, nothing of it is stored, and a client that stops sending is dropped."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
from migrated import migrate_fresh

from fsbill.cdr_intake import MAX_UUID_CHARS, CdrIntake
from fsbill.db import Store

AUTH = "Basic " + base64.b64encode(b"fs:pw").decode()


@pytest.fixture
def intake(db_url):
    migrate_fresh(db_url)
    store = Store(db_url)
    store.upgrade()
    server = CdrIntake(
        store,
        "127.0.0.1",
        0,
        "fs",
        "pw",
        lambda: 1_700_000_000_000_000,
        lambda a, c, d: "completed",
        read_timeout_s=0.5,
    )
    server.start()
    yield server
    server.stop()
    store.close()


def stored(intake: CdrIntake) -> list[str]:
    m = intake.store.models
    with intake.store.reading():
        return [r.uuid for r in m.SwitchCdr.select()]


def raw_post(
    intake: CdrIntake, body: bytes, *, length: int | None = None, ctype: str = "application/json"
) -> tuple[int, bytes]:
    """One POST on a fresh connection; returns (status, reply body)."""
    head = (
        f"POST /cdr HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", intake.port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30


def cdr(**variables: object) -> bytes:
    base: dict[str, object] = {
        "uuid": "0b0cbd33-3b8c-4a3f-9a39-6f0d9d0d1a11",
        "start_uepoch": "1700000000000000",
        "answer_uepoch": "1700000002000000",
        "end_uepoch": "1700000032000000",
        "billsec": "30",
        "hangup_cause": "NORMAL_CLEARING",
    }
    base.update(variables)
    return json.dumps(
        {"variables": base, "callflow": [{"caller_profile": {"destination_number": "4930123456"}}]}
    ).encode()


def test_a_well_formed_post_is_stored(intake):
    status, _ = raw_post(intake, cdr())
    assert status == 200 and stored(intake) == ["0b0cbd33-3b8c-4a3f-9a39-6f0d9d0d1a11"]


@pytest.mark.parametrize(
    "body, says",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests too deep"),  # was 500: RecursionError
        (b'{"variables": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nests too deep"),
        (cdr(answer_uepoch="9" * 30), "answer_uepoch"),  # was 500: OverflowError
        (cdr(end_uepoch="1" * 5000), "end_uepoch"),
        (cdr(start_uepoch="-5"), "start_uepoch"),
        (cdr(answer_uepoch="\u0661\u0662"), "answer_uepoch"),  # non-ASCII digits
        (cdr(billsec="12345678901"), "billsec"),
        (cdr(uuid="u" * 100_000), "uuid"),  # was stored
        (cdr(uuid="u" * (MAX_UUID_CHARS + 1)), "uuid"),
        (cdr(uuid="a b"), "uuid"),
        (cdr(uuid="x\u00e9"), "uuid"),
        (cdr(hangup_cause="N" * 300), "hangup_cause"),
        (cdr(hangup_cause="\ud800"), "hangup_cause"),  # a lone surrogate cannot be stored
        (cdr(hangup_cause="%FF%FE"), "not UTF-8"),  # url-encoded invalid UTF-8
        (cdr(answer_uepoch=["1"]), "answer_uepoch"),
        (cdr().replace(b"NORMAL_CLEARING", b"NORMAL\xff\xfeCLEARING"), "not UTF-8"),  # was stored
        (b"\xff" + cdr(), "not UTF-8"),
        (b"not json", "not JSON"),
        (b'{"variables": 5}', "variables"),
    ],
)
def test_every_malformed_post_is_a_400_and_nothing_is_stored(intake, body, says):
    status, reply = raw_post(intake, body)
    assert status == 400, reply
    assert says in json.loads(reply)["error"]
    assert stored(intake) == []
    assert raw_post(intake, cdr())[0] == 200  # the intake still serves


def test_bad_form_and_base64_encodings_are_400(intake):
    assert raw_post(intake, b"cdr=%FF%FE", ctype="application/x-www-form-urlencoded")[0] == 400
    assert raw_post(intake, b"cdr=!!!notbase64", ctype="application/x-www-form-base64-encoded")[0] == 400
    bad = base64.b64encode(b"\xff" + cdr())
    assert raw_post(intake, b"cdr=" + bad, ctype="application/x-www-form-base64-encoded")[0] == 400
    good = base64.b64encode(cdr())
    assert raw_post(intake, b"cdr=" + good, ctype="application/x-www-form-base64-encoded")[0] == 200


@pytest.mark.timeout(30)
def test_a_body_shorter_than_its_content_length_times_out(intake):
    started = time.monotonic()
    status, reply = raw_post(intake, b'{"variables":', length=1000)
    assert status == 400 and "not sent in time" in json.loads(reply)["error"]
    assert time.monotonic() - started < 5  # read_timeout_s 0.5, not forever
    assert stored(intake) == []


@pytest.mark.timeout(30)
def test_a_client_that_sends_no_headers_is_dropped(intake):
    with socket.create_connection(("127.0.0.1", intake.port), timeout=10) as sock:
        sock.sendall(b"POST /cdr HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        started = time.monotonic()
        while sock.recv(65536):
            pass  # the server closes the connection
        assert time.monotonic() - started < 5


def test_bad_content_lengths(intake):
    assert raw_post(intake, cdr(), length=10**13)[0] == 413
    status, _ = raw_post(intake, b"x" * 10)  # not JSON
    assert status == 400
