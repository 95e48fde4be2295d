"""FreeSWITCH's scheduler (src/switch_scheduler.c), on a `Clock`.

What switch_scheduler.c does, and the emulator with it:

- switch_scheduler_add_task_ex: a task carries a runtime in whole epoch seconds
  (switch_epoch_time_now) and a group (the channel uuid for sched_hangup, sched_transfer and
  sched_broadcast). `if (task_runtime < now) { container->task.repeat = task_runtime;
  task_runtime += now; }`: a runtime in the past is taken as relative to now *and* becomes the
  task's repeat interval. Adding a task pushes an ADD_SCHEDULE event onto the task thread's
  queue, which wakes it at once.
- switch_scheduler_task_thread: loops over task_thread_loop(0) (run every task with
  `now >= runtime`, then free the destroyed ones, pushing DEL_SCHEDULE) and
  switch_queue_pop_timeout(globals.event_queue, ..., 500000): it waits at most 0.5 s, less
  when a scheduler event is queued. So passes fall 0.5 s apart from the last scheduler event
  (an add), and a task whose epoch second T has come runs at the first pass at or after T:
  up to 0.5 s late; a `+N` task runs between N-1 and N seconds after it was added.
- switch_scheduler_execute: a repeating task is put back at `now + repeat`; others are done.
- switch_scheduler_del_task_id / _group: `sched_del`; a channel's tasks go when it is destroyed.

Passes are computed, not slept to: when the task greenlet wakes (late, under a time scale or
a loaded CPU), it replays the passes that were due since the last one, in order, and stamps
each task with the instant its pass was due (`Task.fired_us`). That instant is what the
channel uses for the hang-up, so a lagging emulator never stretches a call.

`late_s` is a deterministic knob for tests: passes on a fixed grid `k * poll_s + late_s`
(epoch time) instead of following the adds, so every task runs exactly `late_s` after its
epoch second (0 <= late_s < poll_s; 0.499 is the worst case FreeSWITCH shows).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
import gevent.event

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
    fired_us: int = 0  # the instant the pass that ran it was due
    created_us: int = 0
    repeat: int = 0  # seconds; set when the runtime given was in the past


class Scheduler:
    """`tick_s` is the resolution of the scheduler's clock: 1.0 = whole epoch seconds, as in
    FreeSWITCH. `poll_s` is the task thread's longest wait between passes, in call-time
    seconds (switch_queue_pop_timeout's 500000 µs). `late_s`: see the module docstring."""

    def __init__(self, clock: Clock, *, tick_s: float = 1.0, poll_s: float = 0.5, late_s: float | None = None) -> None:
        if tick_s <= 0 or poll_s <= 0:
            raise ValueError("tick_s and poll_s must be positive")
        if late_s is not None and not 0 <= late_s < poll_s:
            raise ValueError("late_s must be in [0, poll_s)")
        self.clock = clock
        self.tick_s = tick_s
        self.poll_s = poll_s
        self.late_s = late_s
        self._tick_us = int(tick_s * 1_000_000)
        self._poll_us = int(poll_s * 1_000_000)
        # the task list, kept as FreeSWITCH's (insertion order) plus two indexes: by group
        # (sched_del <uuid>) and a heap by runtime (a pass touches only the tasks that are due)
        self._tasks: dict[int, Task] = {}
        self._groups: dict[str, dict[int, Task]] = {}
        self._heap: list[tuple[int, int]] = []  # (runtime, task_id); stale entries are skipped
        self._ids = itertools.count(1)
        self._greenlet: gevent.Greenlet | None = None
        self._closed = False
        self._wake = gevent.event.Event()
        self._events_us: list[int] = []  # ADD_SCHEDULE events the task thread has not popped yet
        self._last_pass_us: int | None = None
        self.passes = 0

    def _second(self, us: int) -> int:
        """switch_epoch_time_now() at instant `us`: the epoch second (or tick)."""
        if self.tick_s == 1.0:
            return us // 1_000_000
        return (us // self._tick_us) * self._tick_us // 1_000_000

    def now(self) -> int:
        return self._second(self.clock.now_us())

    def add(
        self, runtime: int, func: Callable[[Task], None], *, group: str, desc: str, kind: str = "", arg: str = ""
    ) -> Task:
        now_us = self.clock.now_us()
        now = self._second(now_us)
        repeat = 0
        if runtime < now:  # switch_scheduler_add_task_ex: a runtime in the past is relative
            repeat = int(runtime)
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
            created_us=now_us,
            repeat=repeat,
        )
        self._tasks[task.task_id] = task
        self._groups.setdefault(task.group, {})[task.task_id] = task
        heapq.heappush(self._heap, (task.runtime, task.task_id))
        self._events_us.append(now_us)  # ADD_SCHEDULE wakes the task thread
        self._wake.set()
        self._ensure_running()
        return task

    def _remove(self, task: Task) -> None:
        self._tasks.pop(task.task_id, None)
        group = self._groups.get(task.group)
        if group is not None:
            group.pop(task.task_id, None)
            if not group:
                del self._groups[task.group]

    def del_id(self, task_id: int) -> int:
        """switch_scheduler_del_task_id."""
        task = self._tasks.get(task_id)
        if task is None:
            return 0
        self._remove(task)
        return 1

    def del_group(self, group: str) -> int:
        """switch_scheduler_del_task_group."""
        tasks = self._groups.pop(group, {})
        for task_id in tasks:
            self._tasks.pop(task_id, None)
        return len(tasks)

    def tasks(self, group: str | None = None) -> list[Task]:
        if group is None:
            return list(self._tasks.values())
        return list(self._groups.get(group, {}).values())

    def _ensure_running(self) -> None:
        if not self._closed and (self._greenlet is None or self._greenlet.dead):
            self._greenlet = gevent.spawn(self._run)

    # ---- the task thread ------------------------------------------------------------------
    def _next_pass(self, after_us: int) -> int:
        """When the pass after the one at `after_us` is due."""
        if self.late_s is not None:  # the fixed grid of the test knob
            late_us = int(self.late_s * 1_000_000)
            return ((after_us - late_us) // self._poll_us + 1) * self._poll_us + late_us
        # switch_queue_pop_timeout(..., 500000), which returns at once for a queued event
        self._events_us = [e for e in self._events_us if e > after_us]
        nxt = after_us + self._poll_us
        return min(nxt, self._events_us[0]) if self._events_us else nxt

    def _pass(self, at_us: int) -> None:
        """task_thread_loop(0) as it ran at `at_us`: every task that existed then and whose
        runtime has come runs, in the task list's order (switch_scheduler_execute); afterwards
        a repeating task is put back at now + repeat, a task whose callback moved its runtime
        later stays (the session heartbeat does that), and the others are done."""
        self.passes += 1
        now = self._second(at_us)
        due: list[Task] = []
        later: list[tuple[int, int]] = []
        while self._heap and self._heap[0][0] <= now:
            runtime, task_id = heapq.heappop(self._heap)
            task = self._tasks.get(task_id)
            if task is None or task.runtime != runtime:
                continue  # deleted, or moved (it has its own entry)
            if task.created_us > at_us:
                later.append((runtime, task_id))  # added after this pass ran
                continue
            due.append(task)
        for entry in later:
            heapq.heappush(self._heap, entry)
        due.sort(key=lambda t: t.task_id)
        for task in due:
            if task.task_id not in self._tasks:  # deleted by an earlier task of this pass
                continue
            task.fired_us = at_us
            try:
                task.func(task)
            except Exception:  # a task must never kill the task thread
                log.exception("scheduled task %s failed", task.desc)
            if task.repeat:
                task.runtime = now + task.repeat
            if task.task_id in self._tasks:
                if task.runtime <= now:
                    self._remove(task)
                else:
                    heapq.heappush(self._heap, (task.runtime, task.task_id))

    def _run(self) -> None:
        if self._last_pass_us is None:
            self._last_pass_us = self.clock.now_us()
            if self.late_s is None:
                self._pass(self._last_pass_us)
        while not self._closed:
            now_us = self.clock.now_us()
            due_us = self._next_pass(self._last_pass_us)
            while due_us <= now_us:  # every pass due by now, in order, each at its own instant
                self._pass(due_us)
                self._last_pass_us = due_us
                due_us = self._next_pass(due_us)
            self._wake.clear()
            self._wake.wait(self.clock.real_seconds((due_us - now_us) / 1_000_000))

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self._tasks.clear()
        self._groups.clear()
        self._heap.clear()


__all__ = ["Scheduler", "Task"]
