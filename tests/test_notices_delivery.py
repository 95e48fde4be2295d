"""Delivering notices over real sockets: a webhook receiver (a real HTTP server here) that checks
the Standard Webhooks signature, one that fails three times then recovers, an SMTP stand-in,
and two deliverers on PostgreSQL sharing the outbox. The clock is stepped by the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email import message_from_bytes
from email.message import Message

import gevent
import gevent.event
import pytest
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer
from migrated import migrate_fresh
from standardwebhooks import Webhook

from fsbill.config import NotifyConfig, SmtpConfig, WebhookConfig
from fsbill.core.money import Money
from fsbill.db import Store, ledger
from fsbill.db import notices as dbnotices
from fsbill.notify import Notifier

SECRET = "whsec_" + base64.b64encode(b"a key only this test knows").decode()
NOW = 1_750_000_000 * 1_000_000
M = Money.parse


class Receiver:
    """A webhook endpoint: checks each request's signature (with the reference library and by
    the algorithm written out), answers 500 to the first `fail` requests, then 204."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[tuple[str, int]] = []  # (webhook-id, status answered)
        self.accepted: dict[str, dict] = {}
        self.server = WSGIServer(("127.0.0.1", 0), self.app, log=None)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/fsbill"

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read()
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        msg_id, stamp, signature = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
        assert signature == "v1," + expected.decode()
        payload = Webhook(SECRET).verify(body, headers)  # the reference check (timestamp within 5 minutes)
        status = 500 if len(self.requests) < self.fail else 204
        self.requests.append((msg_id, status))
        if status == 204:
            self.accepted.setdefault(msg_id, payload)
        start_response(f"{status} {'No Content' if status == 204 else 'Oops'}", [])
        return [b""]

    def stop(self) -> None:
        self.server.stop()


class SmtpStandIn:
    """Enough of an SMTP server (RFC 5321) to take a message: EHLO, MAIL, RCPT, DATA, QUIT. The
    first `fail` DATA commands get a 451 (a temporary failure)."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.refused = 0
        self.messages: list[tuple[str, list[str], Message]] = []
        self.server = StreamServer(("127.0.0.1", 0), self.session)
        self.server.start()
        self.port = self.server.server_port

    def session(self, sock, _address) -> None:
        f = sock.makefile("rwb")

        def say(line: str) -> None:
            f.write(line.encode() + b"\r\n")
            f.flush()

        say("220 stand-in ESMTP")
        sender, rcpts = "", []
        while True:
            line = f.readline().decode().strip()
            verb = line.split(" ", 1)[0].upper()
            if not line or verb == "QUIT":
                say("221 bye")
                return
            if verb in ("EHLO", "HELO"):
                say("250 stand-in")
            elif verb == "MAIL":
                sender, rcpts = line.split(":", 1)[1].strip(" <>"), []
                say("250 ok")
            elif verb == "RCPT":
                rcpts.append(line.split(":", 1)[1].strip(" <>"))
                say("250 ok")
            elif verb == "DATA":
                say("354 go on")
                data = b""
                while (chunk := f.readline()) not in (b".\r\n", b""):
                    data += chunk
                if self.refused < self.fail:
                    self.refused += 1
                    say("451 try again later")
                else:
                    self.messages.append((sender, rcpts, message_from_bytes(data)))
                    say("250 queued")
            elif verb in ("RSET", "NOOP"):
                say("250 ok")
            else:
                say("502 not here")

    def stop(self) -> None:
        self.server.stop()


class SteppedClock:
    def __init__(self, start_us: int | None = None) -> None:
        self.us = start_us if start_us is not None else time.time_ns() // 1000

    def __call__(self) -> int:
        return self.us

    def step(self, seconds: float) -> None:
        self.us += int(seconds * 1_000_000)


def seed(store: Store, email: str = "") -> None:
    ledger.create_tariff(store, "retail", "EUR", NOW)
    ledger.create_account(store, "acme", "retail", NOW)
    if email:
        from fsbill.db import management

        management.set_account(store, "acme", NOW, "test", email=email)
    ledger.topup(store, "acme", M("20"), NOW)
    dbnotices.set_levels(store, "account", "acme", "10", NOW, actor="test")


def raise_low(store: Store, at_us: int) -> str:
    ledger.adjust(store, "acme", M("-15"), "test", at_us)
    (notice,) = dbnotices.list_notices(store, pending=True)
    return notice.id


def config(url: str = "", smtp_port: int = 0, **kw) -> NotifyConfig:
    webhook = WebhookConfig(url=url, secret=SECRET, timeout_s=2.0) if url else WebhookConfig()
    smtp = SmtpConfig(host="127.0.0.1", port=smtp_port, from_="billing@operator.example", timeout_s=2.0)
    return NotifyConfig(webhook=webhook, smtp=smtp if smtp_port else SmtpConfig(), **kw)


def test_a_signed_webhook_is_delivered_once_and_marked_delivered(sqlite_store):
    receiver = Receiver()
    clock = SteppedClock()
    try:
        seed(sqlite_store)
        nid = raise_low(sqlite_store, clock())
        notifier = Notifier(config(receiver.url), sqlite_store, "node-a", clock)
        assert notifier.deliver_due() == 1
        assert receiver.requests == [(nid, 204)]
        envelope = receiver.accepted[nid]
        assert envelope["type"] == "balance.low" and envelope["id"] == nid
        assert envelope["data"]["level"] == "10.00" and envelope["data"]["available"] == "5.00"
        (notice,) = dbnotices.list_notices(sqlite_store)
        assert (notice.status, notice.webhook, notice.email, notice.attempts) == ("delivered", "sent", "none", 0)
        clock.step(3600)
        assert notifier.deliver_due() == 0  # delivered is final: never sent again
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()


def test_a_receiver_failing_three_times_gets_it_on_the_fourth_and_only_then_is_it_delivered(store):
    receiver = Receiver(fail=3)
    clock = SteppedClock()
    try:
        seed(store)
        nid = raise_low(store, clock())
        notifier = Notifier(config(receiver.url, retry_first_s=10, retry_max_s=3600), store, "node-a", clock)
        for attempt, wait_s in ((1, 10), (2, 20), (3, 40)):
            assert notifier.deliver_due() == 1
            (n,) = dbnotices.list_notices(store)
            assert (n.status, n.webhook, n.attempts) == ("pending", "pending", attempt)
            assert n.last_error == f"webhook: HTTP 500 from {receiver.url}"
            assert n.next_attempt_us == clock() + wait_s * 1_000_000  # exponential backoff
            clock.step(wait_s - 1)
            assert notifier.deliver_due() == 0  # not due yet
            clock.step(1)
        assert notifier.deliver_due() == 1
        assert receiver.requests == [(nid, 500), (nid, 500), (nid, 500), (nid, 204)]  # one stable id
        (n,) = dbnotices.list_notices(store)
        assert (n.status, n.webhook, n.attempts, n.last_error, n.delivered_us) == ("delivered", "sent", 3, "", clock())
    finally:
        receiver.stop()


def test_an_unreachable_receiver_is_a_failure_not_a_delivery(sqlite_store):
    receiver = Receiver()
    url = receiver.url
    receiver.stop()  # nothing listens there any more
    clock = SteppedClock()
    seed(sqlite_store)
    raise_low(sqlite_store, clock())
    notifier = Notifier(config(url), sqlite_store, "node-a", clock)
    assert notifier.deliver_due() == 1
    (n,) = dbnotices.list_notices(sqlite_store)
    assert n.status == "pending" and n.webhook == "pending" and "Connection refused" in n.last_error
    assert notifier.failed == 1 and notifier.delivered == 0


def test_email_through_smtp_with_the_kinds_template_after_a_refusal(sqlite_store):
    smtp = SmtpStandIn(fail=1)
    clock = SteppedClock(NOW)
    try:
        seed(sqlite_store, email="billing@acme.example")
        nid = raise_low(sqlite_store, clock())
        notifier = Notifier(config(smtp_port=smtp.port, retry_first_s=5), sqlite_store, "node-a", clock)
        notifier.deliver_due()
        (n,) = dbnotices.list_notices(sqlite_store)
        assert n.status == "pending" and n.email == "pending" and "451" in n.last_error
        clock.step(5)
        notifier.deliver_due()
        (n,) = dbnotices.list_notices(sqlite_store)
        assert (n.status, n.email, n.webhook) == ("delivered", "sent", "none")
        ((sender, rcpts, message),) = smtp.messages
        assert sender == "billing@operator.example" and rcpts == ["billing@acme.example"]
        assert message["Subject"] == "Low balance on account acme: 5.00 EUR available"
        assert message["Message-ID"] == f"<{nid}@operator.example>"
        body = message.get_payload(decode=True).decode()
        assert "under 10.00 EUR" in body and nid in body
    finally:
        smtp.stop()


def test_a_channel_sent_is_not_sent_again_when_the_other_is_retried(sqlite_store):
    receiver, smtp = Receiver(), SmtpStandIn(fail=2)
    clock = SteppedClock()
    try:
        seed(sqlite_store, email="billing@acme.example")
        raise_low(sqlite_store, clock())
        notifier = Notifier(config(receiver.url, smtp.port, retry_first_s=1), sqlite_store, "node-a", clock)
        for _ in range(3):
            notifier.deliver_due()
            clock.step(10)
        (n,) = dbnotices.list_notices(sqlite_store)
        assert (n.status, n.webhook, n.email, n.attempts) == ("delivered", "sent", "sent", 2)
        assert len(receiver.requests) == 1 and len(smtp.messages) == 1
    finally:
        receiver.stop()
        smtp.stop()


def test_two_deliverers_on_postgresql_deliver_each_notice_once(pg_url):
    receiver = Receiver()
    migrate_fresh(pg_url)
    stores = [Store(pg_url), Store(pg_url)]
    stores[0].upgrade()
    try:
        seed(stores[0])
        for i in range(40):
            with stores[0].transaction():
                dbnotices.raise_notice(stores[0], "charge.posted", "acme", {"n": i}, NOW)
        now_us = lambda: time.time_ns() // 1000  # noqa: E731 - the real clock: both nodes run live
        done = gevent.event.Event()

        def sleep(seconds: float) -> None:
            # The runners stop between rounds. Killed in the middle of a query instead, a runner
            # could miss the kill (the driver's error on the broken connection is a
            # DatabaseUnavailable, which the loop rides out) and killall waited until the
            # test's timeout, 300 s.
            if done.is_set():
                raise gevent.GreenletExit
            gevent.sleep(seconds)

        notifiers = [
            Notifier(config(receiver.url, poll_s=0.01, batch=3), store, f"node-{i}", now_us, sleep=sleep)
            for i, store in enumerate(stores)
        ]
        runners = [gevent.spawn(n.run) for n in notifiers]
        with gevent.Timeout(60):
            while len(dbnotices.list_notices(stores[0], pending=True)):
                gevent.sleep(0.05)
        done.set()
        gevent.joinall(runners, timeout=30, raise_error=True)
        assert all(r.dead for r in runners)
        ids = [msg_id for msg_id, _ in receiver.requests]
        assert len(ids) == 40 and len(set(ids)) == 40  # each once, none twice
        assert all(n.delivered > 0 for n in notifiers)  # both took part
        assert {n.status for n in dbnotices.list_notices(stores[0])} == {"delivered"}
    finally:
        receiver.stop()
        for s in stores:
            s.close()


@pytest.mark.parametrize("secret", ["", "nope"])
def test_a_webhook_needs_a_standard_secret(secret):
    from fsbill.config import load_settings
    from fsbill.errors import ConfigError

    with pytest.raises(ConfigError, match="notify.webhook.secret"):
        load_settings(None, {"notify": {"webhook": {"url": "http://127.0.0.1:9/x", "secret": secret}}})


def test_serve_delivers_the_notice_a_real_call_raises(sqlite_url):
    """End to end: `fsbill serve` (a node in this process), a call through the FreeSWITCH
    emulator whose first hold takes the account under its level, the webhook on the wire."""
    from tests.rig import Rig

    receiver = Receiver()
    notify = {"webhook": {"url": receiver.url, "secret": SECRET, "timeout_s": 2}, "poll_s": 0.05}
    rig = Rig(sqlite_url, time_scale=1.0, notify=notify)
    try:
        rig.account("acme", "10.50")
        dbnotices.set_levels(rig.store, "account", "acme", "10", rig.clock.now_us(), actor="test")
        record = rig.call(talk_s=1.0, answer_after_s=0.1)
        assert record is not None
        rig.settled(1)
        with gevent.Timeout(10):
            while not receiver.accepted:
                gevent.sleep(0.05)
        ((nid, envelope),) = receiver.accepted.items()
        assert envelope["type"] == "balance.low" and envelope["data"]["available"] == "8.50"  # 10.50 − a 2.00 hold
        (n,) = dbnotices.list_notices(rig.store)
        assert n.id == nid and n.status == "delivered"
    finally:
        rig.close()
        receiver.stop()
