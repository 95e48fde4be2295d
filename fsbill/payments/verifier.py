"""The greenlet that asks PayPal about each stored notice until it has an answer.

PayPal never resends a notice it was told it delivered, so a notice is stored before it is
acknowledged (fsbill.payments.app) and verified from the store: now (`wake`), and again with
a backoff doubling from `retry_base_s` up to `payments.paypal.retry_max_s` for as long as the
verify URL cannot answer, across restarts (`fsbill serve` picks up what is still pending).
Each attempt is claimed in the database first, so two nodes, or two greenlets, never verify the
same notice at the same time; applying it is once whatever happens (fsbill.db.payments).
"""

from __future__ import annotations

import logging

import gevent
import gevent.event

from fsbill.clock import Clock
from fsbill.config import PaypalConfig
from fsbill.db import Store
from fsbill.db import payments as db
from fsbill.errors import DatabaseUnavailable
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics
from fsbill.payments import paypal

log = logging.getLogger("fsbill.payments")

RETRY_BASE_S = 10
POLL_S = 5.0  # how often the store is looked at for notices whose retry is due


class PaypalVerifier:
    def __init__(
        self,
        store: Store,
        config: PaypalConfig,
        clock: Clock,
        metrics: Metrics | None = None,
        *,
        retry_base_s: float = RETRY_BASE_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.retry_base_s = retry_base_s
        self.poll_s = poll_s
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self.run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
            self._greenlet = None

    def wake(self) -> None:
        """A notice was just stored: verify it now rather than at the next poll."""
        self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.run_once()
            except DatabaseUnavailable as exc:
                log_event(log, "paypal_verify_deferred", error=str(exc))
            except Exception:  # a bug must not end the loop that owns every pending notice
                log.exception("paypal verification pass failed")
            self._wake.wait(timeout=self.poll_s)

    def run_once(self) -> int:
        """Verify every notice that is due; returns how many were settled (verified or refused)."""
        settled = 0
        for notice_id, text, attempts in db.due_pending(self.store, "paypal", self.clock.now_us()):
            if self.verify_one(notice_id, text, attempts):
                settled += 1
        return settled

    def backoff_s(self, attempts: int) -> float:
        return float(min(self.retry_base_s * 2 ** min(attempts, 30), self.config.retry_max_s))

    def verify_one(self, notice_id: int, text: str, attempts: int) -> bool:
        now = self.clock.now_us()
        retry_at = now + int(self.backoff_s(attempts) * 1_000_000)
        if not db.claim(self.store, notice_id, attempts, now, retry_at):
            return False  # another node or greenlet has it
        body = paypal.as_bytes(text)
        try:
            verified = paypal.verify(self.config.verify_url, body, self.config.verify_timeout_s)
        except paypal.VerifyFailed as exc:
            db.note_failure(self.store, notice_id, self.clock.now_us(), str(exc))
            log_event(log, "paypal_verify_failed", notice=notice_id, attempt=attempts + 1, error=str(exc))
            return False
        now = self.clock.now_us()
        if not verified:
            db.mark(self.store, notice_id, "invalid", now, "PayPal answered INVALID")
            self._count("invalid")
            log_event(log, "paypal_notice_invalid", notice=notice_id)
            return True
        reading = paypal.read_notice(body, self.config.receiver_email)
        outcome = db.settle_pending(
            self.store, notice_id, reading.item, now, status=reading.status, reason=reading.reason
        )
        self._count(outcome.outcome)
        log_event(log, "paypal_notice", notice=notice_id, outcome=outcome.outcome, detail=outcome.detail)
        return True

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.payment_notices.labels("paypal", outcome).inc()


__all__ = ["PaypalVerifier"]
