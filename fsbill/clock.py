"""The one place fsbill reads the time.

FreeSWITCH reports times as epoch microseconds (`*_uepoch`); fsbill uses the same unit.
`time_scale` exists for tests, demos and benchmarks: the server and the FreeSWITCH emulator
each build a `Clock(time_scale)` and, because both scale from the same fixed anchor, agree
on "now" without talking to each other, so a 10-minute call can run in a few seconds while
every epoch on the wire stays consistent. Production runs at scale 1 (the real clock).
"""

from __future__ import annotations

import time

import gevent

# A fixed point both sides scale around (2024-01-01T00:00:00Z). Scaled clocks run fast
# from here, so they only agree if they share it.
ANCHOR_US = 1_704_067_200_000_000


class Clock:
    def __init__(self, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale

    def now_us(self) -> int:
        real_us = time.time_ns() // 1000
        if self.time_scale == 1.0:
            return real_us
        return ANCHOR_US + int((real_us - ANCHOR_US) * self.time_scale)

    def now_s(self) -> float:
        return self.now_us() / 1_000_000

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock's time last in real time."""
        return seconds / self.time_scale

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of this clock's time (cooperatively, under gevent)."""
        gevent.sleep(max(0.0, seconds / self.time_scale))


__all__ = ["Clock", "ANCHOR_US"]
