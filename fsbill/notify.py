"""Delivering notices (docs/NOTICES.md): the outbox to a webhook and to email, at least once.

`fsbill serve` runs `Notifier.run` in a greenlet when `notify` has a webhook URL or an SMTP host.
Each round it claims the notices that are due (fsbill.db.notices.claim: a lease, so on several
nodes one deliverer holds a notice at a time), tries every channel still pending, and records
the attempt. A channel is `sent` only after the receiver accepted it (an HTTP 2xx; the SMTP
server took the message); anything else (a refusal, a timeout, a broken connection) leaves it
pending and the notice is retried later with exponential backoff. A failed delivery is never
marked delivered. Each attempt carries the notice's stable id (`webhook-id`, `Message-ID`), so a
receiver drops the duplicates that at-least-once delivery can produce.

Blocking I/O is urllib and smtplib: cooperative under gevent's monkey-patching (fsbill.cli.main patches before `serve`).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate

import gevent

from fsbill.config import NotifyConfig
from fsbill.core.notices import Backoff, email_text, webhook_body, webhook_headers
from fsbill.db import Store
from fsbill.db import notices as dbnotices
from fsbill.db.notices import NONE, PENDING, SENT, NoticeView
from fsbill.errors import DatabaseUnavailable
from fsbill.logs import event as log_event

log = logging.getLogger("fsbill.notify")

USER_AGENT = "fsbill-notices"


class DeliveryFailed(Exception):
    """One channel's attempt failed; the message says why (kept as the notice's last_error)."""


class Notifier:
    def __init__(
        self,
        config: NotifyConfig,
        store: Store,
        deliverer: str,
        now_us: Callable[[], int],
        sleep: Callable[[float], None] = gevent.sleep,
    ) -> None:
        self.config = config
        self.store = store
        self.deliverer = deliverer  # who holds a claim: this process (node:pid:random)
        self.now_us = now_us
        self.sleep = sleep
        self.backoff = Backoff(config.retry_first_s, config.retry_max_s)
        self.delivered = 0
        self.failed = 0

    def run(self) -> None:
        """Deliver until killed, one round every `poll_s` (at once again while rounds are full)."""
        while True:
            try:
                handled = self.deliver_due()
            except DatabaseUnavailable as exc:
                log_event(log, "notices_unavailable", error=str(exc))
                handled = 0
            if handled < self.config.batch:
                self.sleep(self.config.poll_s)

    def deliver_due(self) -> int:
        """One round: claim what is due and try each; returns how many were tried."""
        now = self.now_us()
        claimed = dbnotices.claim(
            self.store, self.deliverer, now, int(self.config.lease_s * 1_000_000), self.config.batch
        )
        for notice in claimed:
            self.deliver(notice)
        return len(claimed)

    def deliver(self, notice: NoticeView) -> bool:
        """Try each pending channel of a claimed notice and record the attempt. True: delivered."""
        errors: list[str] = []
        webhook = self._channel(notice.webhook, bool(self.config.webhook.url), lambda: self._post(notice), errors)
        address = dbnotices.email_address(self.store, notice.account) if notice.email == PENDING else ""
        email = self._channel(
            notice.email, bool(self.config.smtp.host and address), lambda: self._mail(notice, address), errors
        )
        now = self.now_us()
        error = "; ".join(errors)
        dbnotices.record_attempt(
            self.store,
            notice.id,
            self.deliverer,
            now,
            webhook=webhook,
            email=email,
            error=error,
            retry_at_us=now + self.backoff.delay_us(notice.attempts + 1),
        )
        if errors:
            self.failed += 1
            log_event(log, "notice_failed", id=notice.id, kind=notice.kind, attempt=notice.attempts + 1, error=error)
            return False
        self.delivered += 1
        log_event(log, "notice_delivered", id=notice.id, kind=notice.kind, webhook=webhook, email=email)
        return True

    @staticmethod
    def _channel(state: str, configured: bool, send: Callable[[], None], errors: list[str]) -> str:
        if state != PENDING:
            return state  # sent on an earlier attempt (or nothing to send it to)
        if not configured:
            return NONE
        try:
            send()
        except DeliveryFailed as exc:
            errors.append(str(exc))
            return PENDING
        return SENT

    # -- the channels -------------------------------------------------------------------------
    def _post(self, notice: NoticeView) -> None:
        c = self.config.webhook
        body = webhook_body(notice.id, notice.kind, notice.created_us, notice.payload)
        headers = webhook_headers(notice.id, self.now_us() // 1_000_000, body, c.secret)
        request = urllib.request.Request(c.url, data=body, method="POST", headers=headers | {"user-agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=c.timeout_s) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"webhook: HTTP {exc.code} from {c.url}") from None
        except urllib.error.URLError as exc:  # refused, unknown host, bad TLS
            raise DeliveryFailed(f"webhook: cannot reach {c.url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad TLS, a malformed answer
            raise DeliveryFailed(f"webhook: {type(exc).__name__}: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"webhook: HTTP {status} from {c.url}")

    def _mail(self, notice: NoticeView, address: str) -> None:
        c = self.config.smtp
        subject, text = email_text(notice.kind, notice.id, notice.payload)
        message = EmailMessage()
        message["From"] = c.from_
        message["To"] = address
        message["Subject"] = subject
        message["Date"] = formatdate(self.now_us() / 1_000_000, usegmt=True)
        domain = c.from_.rpartition("@")[2] or "fsbill"
        message["Message-ID"] = f"<{notice.id}@{domain}>"  # the stable id: the same on every attempt
        message["X-Fsbill-Notice"] = f"{notice.id} {notice.kind}"
        message.set_content(text)
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
                if c.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if c.username:
                    smtp.login(c.username, c.password)
                refused = smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"email: {type(exc).__name__}: {exc}") from None
        if refused:
            raise DeliveryFailed(f"email: {address} refused: {refused}")
