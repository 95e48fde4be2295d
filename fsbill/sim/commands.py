"""API commands as mod_commands.c answers them (the api/response body, byte for byte).

Each `_api_<name>` follows the mod_commands.c function of that command: sched_hangup
(sched_hangup_function: `+N` relative, 0 = now), sched_transfer, sched_broadcast, sched_del
(sched_del_function: by task id or group, `+OK Deleted: N`), uuid_kill, uuid_setvar,
uuid_getvar (`_undef_` when unset), uuid_exists, uuid_broadcast, uuid_transfer, status.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fsbill.sim import wire
from fsbill.sim.causes import str2cause
from fsbill.sim.dptools import atol

if TYPE_CHECKING:
    from fsbill.clock import Clock
    from fsbill.sim.scheduler import Scheduler, Task
    from fsbill.sim.session import Session
    from fsbill.sim.state import SessionState


class ApiCommands:
    """Mixin of the Switch: `api`/`bgapi` commands."""

    if TYPE_CHECKING:  # the Switch's
        clock: Clock
        scheduler: Scheduler
        _calls: dict[str, Session]
        sessions_started: int
        started_us: int

        def schedule_hangup(self, when: int, uuid: str, cause: str) -> Task: ...
        def schedule_transfer(self, when: int, uuid: str, ext: str, dp: str | None, ctx: str | None) -> Task: ...
        def schedule_broadcast(self, when: int, uuid: str, path: str, leg: str = "aleg") -> Task: ...
        def broadcast(self, call: Session, path: str, leg: str) -> None: ...

    def api(self, command: str, arg: str | None, caller: SessionState | None = None) -> str:
        """switch_api_execute as mod_commands answers it (the api/response body)."""
        name = command.strip()
        handler = getattr(self, f"_api_{name}", None)
        if handler is None or not name:
            return f"-ERR {name} Command not found!\n"
        return handler((arg or "").strip())

    def _api_sched_hangup(self, arg: str) -> str:
        argv = arg.split()[:4] if arg else []
        if not argv:
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        uuid = argv[1] if len(argv) > 1 else ""
        cause = str2cause(argv[2]) if len(argv) > 2 else "ALLOTTED_TIMEOUT"
        sec = atol(argv[0][1:])
        when = self.scheduler.now() + sec if argv[0].startswith("+") else atol(argv[0])
        call = self._calls.get(uuid)
        if call is None:
            return "-ERR No such channel!\n"
        if sec == 0:
            if not call.down:
                call.inbox.put({"kind": "hangup", "cause": cause, "by": "sched_hangup"})
        else:
            self.schedule_hangup(when, uuid, cause)
        return "+OK\n"

    def _api_sched_transfer(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2 or len(argv) > 5:
            return "-USAGE: [+]<time> <uuid> <extension> [<dialplan>] [<context>]\n"
        when = self.scheduler.now() + atol(argv[0][1:]) if argv[0].startswith("+") else atol(argv[0])
        uuid = argv[1]
        if uuid not in self._calls:
            return "-ERR No such channel!\n"
        self.schedule_transfer(
            when,
            uuid,
            argv[2] if len(argv) > 2 else "",
            argv[3] if len(argv) > 3 else None,
            argv[4] if len(argv) > 4 else None,
        )
        return "+OK\n"

    def _api_sched_broadcast(self, arg: str) -> str:
        argv = arg.split()[:4]
        if len(argv) < 3:
            return "-USAGE: [[+]<time>|@time] <uuid> <path> [aleg|bleg|both]\n"
        if argv[0].startswith("@"):
            when = atol(argv[0][1:])
        elif argv[0].startswith("+"):
            when = self.scheduler.now() + atol(argv[0][1:])
        else:
            when = atol(argv[0])
        self.schedule_broadcast(when, argv[1], argv[2], argv[3] if len(argv) > 3 else "aleg")
        return "+OK Message scheduled\n"

    def _api_sched_del(self, arg: str) -> str:
        if not arg:
            return "-ERR Invalid syntax\n"
        if arg.isdigit():
            count = self.scheduler.del_id(int(arg)) if int(arg) > 0 else 0
        else:
            count = self.scheduler.del_group(arg)
        return f"+OK Deleted: {count}\n"

    def _api_uuid_kill(self, arg: str) -> str:
        if not arg:
            return "-USAGE: <uuid> [cause]\n"
        uuid, _, cause = arg.partition(" ")
        call = self._calls.get(uuid)
        if call is None or call.down:
            return "-ERR No such channel!\n"
        call.inbox.put(
            {"kind": "hangup", "cause": str2cause(cause) if cause.strip() else "NORMAL_CLEARING", "by": "uuid_kill"}
        )
        return "+OK\n"

    def _api_uuid_setvar(self, arg: str) -> str:
        argv = arg.split(" ", 2) if arg else []
        if len(argv) not in (2, 3) or not argv[0]:
            return "-USAGE: <uuid> <var> [value]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        if not argv[1]:
            return "-ERR No variable specified\n"
        call._setvar(argv[1], argv[2] if len(argv) == 3 else None)
        return "+OK\n"

    def _api_uuid_getvar(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2:
            return "-USAGE: <uuid> <var>\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        return call.variables.get(argv[1], "_undef_")

    def _api_uuid_dump(self, arg: str) -> str:
        """mod_commands.c uuid_dump_function: the CHANNEL_DATA event of the channel, serialized
        (url-encoded unless the format is `plain`)."""
        argv = arg.split()
        if not argv:
            return "-USAGE: <uuid> [format]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        fmt = argv[1] if len(argv) > 1 else "txt"
        headers = call._channel_headers("CHANNEL_DATA")
        if fmt.lower() == "json":
            return json.dumps(dict(headers))
        if fmt.lower() == "plain":
            return "".join(f"{k}: {v}\n" for k, v in headers) + "\n"
        return wire.serialize_event(headers).decode("utf-8")

    def _api_uuid_exists(self, arg: str) -> str:
        call = self._calls.get(arg)
        return "true" if call is not None else "false"

    def _api_uuid_broadcast(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        self.broadcast(call, argv[1], argv[2] if len(argv) > 2 else "aleg")
        return "+OK Message queued\n"

    def _api_uuid_transfer(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        rest = [a for a in argv[1:] if a not in ("-bleg", "-both")]
        call.inbox.put(
            {
                "kind": "transfer",
                "target": (rest[0], rest[1] if len(rest) > 1 else "XML", rest[2] if len(rest) > 2 else call.context),
                "by": "uuid_transfer",
            }
        )
        return "+OK\n"

    def _api_status(self, arg: str) -> str:
        up_us = max(0, self.clock.now_us() - self.started_us)
        secs, us = divmod(up_us, 1_000_000)
        mins, sec = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        days, hours = divmod(hours, 24)
        years, days = divmod(days, 365)
        ms, mms = divmod(us, 1000)

        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        live = len(self._calls)
        return (
            f"UP {plural(years, 'year')}, {plural(days, 'day')}, {plural(hours, 'hour')}, {plural(mins, 'minute')}, "
            f"{plural(sec, 'second')}, {plural(ms, 'millisecond')}, {plural(mms, 'microsecond')}\n"
            "FreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is ready\n"
            f"{self.sessions_started} session(s) since startup\n"
            f"{live} session(s) - peak {live}, last 5min {live} \n"
            "0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n"
            "1000 session(s) max\n"
            "min idle cpu 0.00/100.00\n"
            "Current Stack Size/Max 240K/8192K\n"
        )


__all__ = ["ApiCommands"]
