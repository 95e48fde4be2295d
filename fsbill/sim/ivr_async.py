"""Scheduled tasks of switch_ivr_async.c, on the switch's Scheduler (scheduler.py).

- `schedule_hangup` is switch_ivr_schedule_hangup (sch_hangup_callback: hang the channel up
  with the cause, if it still exists);
- `schedule_transfer` is switch_ivr_schedule_transfer (sch_transfer_callback →
  switch_ivr_session_transfer);
- `schedule_broadcast` is switch_ivr_schedule_broadcast (sch_broadcast_callback →
  switch_ivr_broadcast), and `broadcast` is switch_ivr_broadcast itself: it queues a
  `playback` (or `app::args`) as a private event to the leg(s).
Every task's group is the channel uuid, so `sched_del <uuid>` removes them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsbill.sim.scheduler import Task

if TYPE_CHECKING:
    from fsbill.clock import Clock
    from fsbill.sim.scheduler import Scheduler
    from fsbill.sim.session import Session


class ScheduledTasks:
    """Mixin of the Switch: the switch_ivr_schedule_* tasks."""

    if TYPE_CHECKING:  # the Switch's
        clock: Clock
        scheduler: Scheduler
        _calls: dict[str, Session]

    def _record_scheduled(self, uuid: str, kind: str, arg: str, runtime: int) -> None:
        call = self._calls.get(uuid)
        if call is not None:
            call.rec.scheduled_tasks.append((kind, arg, runtime, self.clock.now_us()))

    def _fired(self, task: Task) -> Session | None:
        call = self._calls.get(task.group)
        if call is not None:
            call.rec.fired_tasks.append((task.kind, task.arg, task.fired_us or self.clock.now_us()))
        return call

    def schedule_hangup(self, when: int, uuid: str, cause: str) -> Task:
        def run(task: Task) -> None:
            call = self._fired(task)
            if call is not None and not call.down:
                call.inbox.put({"kind": "hangup", "cause": cause, "by": "sched_hangup", "at_us": task.fired_us})

        task = self.scheduler.add(when, run, group=uuid, desc="hangup", kind="sched_hangup", arg=cause)
        self._record_scheduled(uuid, "sched_hangup", cause, task.runtime)
        return task

    def schedule_transfer(self, when: int, uuid: str, ext: str, dp: str | None, ctx: str | None) -> Task:
        arg = " ".join(x for x in (ext, dp, ctx) if x)

        def run(task: Task) -> None:
            call = self._fired(task)
            if call is not None and not call.down:
                call.inbox.put(
                    {
                        "kind": "transfer",
                        "target": (ext, dp or "XML", ctx or call.context),
                        "by": "sched_transfer",
                        "at_us": task.fired_us,
                    }
                )

        task = self.scheduler.add(when, run, group=uuid, desc="transfer", kind="sched_transfer", arg=arg)
        self._record_scheduled(uuid, "sched_transfer", arg, task.runtime)
        return task

    def schedule_broadcast(self, when: int, uuid: str, path: str, leg: str = "aleg") -> Task:
        def run(task: Task) -> None:
            call = self._fired(task)
            if call is not None:
                self.broadcast(call, path, leg)

        task = self.scheduler.add(when, run, group=uuid, desc="broadcast", kind="sched_broadcast", arg=f"{path} {leg}")
        self._record_scheduled(uuid, "sched_broadcast", f"{path} {leg}", task.runtime)
        return task

    def broadcast(self, call: Session, path: str, leg: str) -> None:
        """switch_ivr_broadcast: queue `playback` (or `app::args`) to the A leg; a B-leg-only
        broadcast is not visible on the A leg's socket."""
        call.rec.broadcasts.append((self.clock.now_us(), path, leg))
        if call.down or leg.lower() == "bleg":
            return
        if "::" in path:
            app, _, arg = path.partition("::")
        else:
            app, arg = "playback", path
        call.inbox.put({"kind": "broadcast", "app": app, "arg": arg})


__all__ = ["ScheduledTasks"]
