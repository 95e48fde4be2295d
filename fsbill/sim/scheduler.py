"""FreeSWITCH's scheduler (switch_scheduler.c), on a `Clock`.

Tasks carry a runtime in whole epoch seconds and a group (the channel uuid for sched_hangup,
sched_transfer and sched_broadcast). One task thread walks the list and runs every task whose
runtime is <= the current epoch second, then waits up to 0.5 s (switch_queue_pop_timeout
500000 µs) before looking again. So a task for `now + N` fires between N-1 and N+0.5 seconds
after it was scheduled: the "up to one second early" real FreeSWITCH shows.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent

from fsbill.clock import Clock

log = logging.getLogger("fsbill.sim.scheduler")


@dataclass
class Task:
    task_id: int
    runtime: int  # epoch seconds (multiples of the scheduler's tick)
    group: str
    desc: str
    func: Callable[[Task], None] = field(repr=False)
    created: int = 0
    kind: str = ""
    arg: str = ""
    fired_us: int = 0  # when the task thread's pass ran it (see Scheduler._run)
    created_us: int = 0


class Scheduler:
    """`tick_s` is the resolution of the scheduler's clock: 1.0 = whole epoch seconds, as in
    FreeSWITCH. `poll_s` is the task thread's wait between passes, in call-time seconds."""

    def __init__(self, clock: Clock, *, tick_s: float = 1.0, poll_s: float = 0.5) -> None:
        if tick_s <= 0 or poll_s <= 0:
            raise ValueError("tick_s and poll_s must be positive")
        self.clock = clock
        self.tick_s = tick_s
        self.poll_s = poll_s
        self._tasks: list[Task] = []
        self._ids = itertools.count(1)
        self._greenlet: gevent.Greenlet | None = None
        self._closed = False

    def now(self) -> int:
        """switch_epoch_time_now(): the current epoch second (or tick)."""
        us = self.clock.now_us()
        if self.tick_s == 1.0:
            return us // 1_000_000
        tick_us = int(self.tick_s * 1_000_000)
        return (us // tick_us) * tick_us // 1_000_000

    def add(
        self, runtime: int, func: Callable[[Task], None], *, group: str, desc: str, kind: str = "", arg: str = ""
    ) -> Task:
        now = self.now()
        if runtime < now:  # switch_scheduler_add_task_ex: a runtime in the past is relative
            runtime += now
        task = Task(
            next(self._ids),
            int(runtime),
            group or "none",
            desc or "none",
            func,
            created=now,
            kind=kind,
            arg=arg,
            created_us=self.clock.now_us(),
        )
        self._tasks.append(task)
        self._ensure_running()
        return task

    def del_id(self, task_id: int) -> int:
        before = len(self._tasks)
        self._tasks = [t for t in self._tasks if t.task_id != task_id]
        return before - len(self._tasks)

    def del_group(self, group: str) -> int:
        before = len(self._tasks)
        self._tasks = [t for t in self._tasks if t.group != group]
        return before - len(self._tasks)

    def tasks(self, group: str | None = None) -> list[Task]:
        return [t for t in self._tasks if group is None or t.group == group]

    def _ensure_running(self) -> None:
        if not self._closed and (self._greenlet is None or self._greenlet.dead):
            self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        # The passes are meant to run every poll_s of call time; under a time scale a greenlet
        # wakes late by real milliseconds that become call-time seconds. A pass therefore
        # stamps its tasks with the instant it was due (the previous pass + poll_s), never
        # later than its runtime + poll_s: the window real FreeSWITCH fires in.
        due_us = self.clock.now_us()
        poll_us = int(self.poll_s * 1_000_000)
        while not self._closed:
            now_us = self.clock.now_us()
            due_us = min(max(due_us, now_us - poll_us), now_us)
            now = self.now()
            for task in [t for t in self._tasks if now >= t.runtime]:
                if task not in self._tasks:  # deleted by an earlier task of this pass
                    continue
                self._tasks.remove(task)
                runtime_us = int(task.runtime * 1_000_000)
                earliest = max(runtime_us, task.created_us)
                task.fired_us = min(now_us, max(earliest, min(due_us, earliest + poll_us)))
                try:
                    task.func(task)
                except Exception:  # a task must never kill the task thread
                    log.exception("scheduled task %s failed", task.desc)
            self.clock.sleep(self.poll_s)
            due_us += poll_us

    def close(self) -> None:
        self._closed = True
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self._tasks.clear()


__all__ = ["Scheduler", "Task"]
