"""The verbs the enforcer speaks: every FreeSWITCH command word fsbill sends during a call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsbill.config import Cutoff, Rejection
from fsbill.core.call import Channel, CutoffMark
from fsbill.core.grant import US
from fsbill.errors import ProtocolError

if TYPE_CHECKING:
    from fsbill.esl import EslSession

# -- the verbs the enforcer speaks ------------------------------------------------------------------------
# What a call subscribes to: `myevents` (mod_event_socket.c, the session's own channel events)
# minus the ones enforcement never reads. Each event carries every channel variable (half the
# bytes of a call), so they are dropped in FreeSWITCH with `nixevent` rather than parsed here.
# The enforcer reads: CHANNEL_ANSWER, CHANNEL_UNBRIDGE, CHANNEL_HANGUP, CHANNEL_HANGUP_COMPLETE,
# CHANNEL_EXECUTE_COMPLETE (of bridge), plus the linger/disconnect notices — and CHANNEL_BRIDGE
# for a channel that arrived answered (its billing starts when the bridge comes up) and with
# least-cost routing (which vendor's leg was bridged).
IGNORED_EVENTS = (
    "CHANNEL_EXECUTE",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_STATE",
    "CHANNEL_BRIDGE",
    "CHANNEL_DATA",
    "CHANNEL_APPLICATION",
    "CHANNEL_CREATE",
    "CHANNEL_DESTROY",
    "CHANNEL_ORIGINATE",
    "CHANNEL_UUID",
    "CHANNEL_OUTGOING",
    "DETECTED_SPEECH",
    "DTMF",
    "NOTALK",
    "TALK",
)
NORMAL_CLEARING = "NORMAL_CLEARING"
# What every call subscribes to, written with `connect` when the socket is accepted (needs no
# uuid: `myevents` in an outbound socket is the session's own channel), so its replies arrive
# with the connect reply instead of costing a round trip of their own. CHANNEL_BRIDGE is left
# out: a call that needs it (arrived answered, least-cost routing) asks for it on its own.
# The two filters drop the CHANNEL_EXECUTE_COMPLETE of every application but `bridge` (the
# multiset that arms the call, the cut-off's sched_* run on answer, socket...), each a frame
# with every channel variable that fsbill read only to skip: filters are OR-ed
# (mod_event_socket.c event_handler), the first matches the other events by name, the second
# bridge's completion. They come before `myevents`: in the instant between `myevents` and
# `nixevent` the channel's CHANNEL_PARK got through (seen on a real switch, tests/data/).
SUBSCRIPTION = (
    "filter Event-Name /^CHANNEL_(ANSWER|BRIDGE|UNBRIDGE|HANGUP|HANGUP_COMPLETE)$/",
    "filter Application bridge",
    "myevents",
    f"nixevent {' '.join(IGNORED_EVENTS)}",
    "linger",
)
BRIDGE_EVENTS = "event plain CHANNEL_BRIDGE"


def multiset_arg(assignments: list[str]) -> str:
    """mod_dptools `multiset` with a delimiter none of the values contains (`^^|a=1|b=2 3`):
    one application (one EXECUTE_COMPLETE) instead of one `set` per variable."""
    for delim in "|~!#;":
        if not any(delim in a for a in assignments):
            return f"^^{delim}" + delim.join(assignments)
    raise ProtocolError("no multiset delimiter is free for these values")


# The variables mod_nibblebill acts on (var_name_rate / var_name_account, default names).
NIBBLEBILL_VARIABLES = ("nibble_rate", "nibble_account")


def nibblebill_variables(channel: Channel) -> tuple[str, ...]:
    """The mod_nibblebill variables this channel arrived with (fsbill removes them)."""
    return tuple(name for name in NIBBLEBILL_VARIABLES if channel.var(name))


def cutoff_mark(cutoff: Cutoff) -> CutoffMark:
    """How the core recognises a call its cut-off ended, for this cut-off configuration."""
    if cutoff.mode == "transfer":
        return CutoffMark(transfer_extension=cutoff.transfer_extension)
    return CutoffMark(hangup_cause=cutoff.hangup_cause)


def cutoff_on_answer(cutoff: Cutoff, offset_s: int) -> tuple[str, str]:
    """The dialplan application (name, argument) that `execute_on_answer` runs so that
    FreeSWITCH itself ends the call `offset_s` after answer, even if fsbill dies."""
    if cutoff.mode == "transfer":
        return (
            "sched_transfer",
            f"+{offset_s} {cutoff.transfer_extension} {cutoff.transfer_dialplan} {cutoff.transfer_context}",
        )
    return "sched_hangup", f"+{offset_s} {cutoff.hangup_cause}"


def warning_on_answer(cutoff: Cutoff, offset_s: int) -> tuple[str, str]:
    return "sched_broadcast", f"+{offset_s} {cutoff.warning_prompt} {cutoff.warning_leg}"


def cutoff_api(cutoff: Cutoff, uuid: str, when: int | str) -> str:
    """API command arming the cut-off at an absolute epoch second, or `+N` seconds from now."""
    if cutoff.mode == "transfer":
        return (
            f"sched_transfer {when} {uuid} "
            f"{cutoff.transfer_extension} {cutoff.transfer_dialplan} {cutoff.transfer_context}"
        )
    return f"sched_hangup {when} {uuid} {cutoff.hangup_cause}"


def warning_api(cutoff: Cutoff, uuid: str, when: int | str) -> str:
    return f"sched_broadcast {when} {uuid} {cutoff.warning_prompt} {cutoff.warning_leg}"


# An absolute instant closer than this to now is sent relative (`+N`): by the time the command
# reaches FreeSWITCH its whole second may have passed, and switch_scheduler.c takes a past
# runtime as relative to now (`runtime += now`): a task that never fires in the call's life.
_ABSOLUTE_MARGIN_US = 5 * US


def _when(at_us: int, now_us: int) -> int | str:
    """The time argument of a sched_* API command for the instant `at_us`, decided at `now_us`."""
    if at_us - now_us >= _ABSOLUTE_MARGIN_US:
        return at_us // US
    return f"+{max(1, -(-(at_us - now_us) // US))}"


class CallControl:
    """One call's session, in the enforcer's terms. Every FreeSWITCH command word fsbill sends
    during a call is composed here."""

    def __init__(self, session: EslSession, uuid: str, cutoff: Cutoff, strip: tuple[str, ...] = ()) -> None:
        self.session = session
        self.uuid = uuid
        self.cutoff = cutoff
        self.strip = strip  # channel variables to remove when the call is armed

    def subscribe(self, bridge_events: bool = False) -> None:
        """The call's events (see IGNORED_EVENTS; `bridge_events` adds CHANNEL_BRIDGE), and
        linger so that the final events still arrive after the hangup. The SUBSCRIPTION went
        out with `connect` and its replies were checked then (EslServer.listen); a session
        that did not send it says so (`subscribed` False) and it is sent here."""
        commands = [] if getattr(self.session, "subscribed", False) else list(SUBSCRIPTION)
        if bridge_events:
            commands.append(BRIDGE_EVENTS)
        if commands:
            self.session.expect_ok_many(commands)

    def arm_from_now(self, cutoff_after_s: int) -> None:
        """Arm the cut-off `cutoff_after_s` from now, relative (`+N`): for a channel that is
        already answered, whose billing start (the bridge) is not known yet. An absolute
        instant already past would never fire (switch_scheduler.c takes it as relative to
        now). Deletes the channel's earlier tasks first (a previous socket visit's)."""
        self.session.api(f"sched_del {self.uuid}", cutoff_api(self.cutoff, self.uuid, f"+{max(1, cutoff_after_s)}"))

    def arm(
        self, variables: dict[str, str], cutoff_after_answer_s: int | None, warning_after_answer_s: int | None
    ) -> None:
        """Set the call's variables and, for a call not answered yet, have FreeSWITCH arm the
        cut-off (and the warning) itself the moment it answers: `execute_on_answer`, so the
        cut-off exists inside FreeSWITCH even if fsbill dies before the answer. Its reply is
        awaited before the bridge is sent: a call is never bridged on a socket fsbill has lost
        (pipelining the two let a half-closed peer's call talk until its cut-off, unfollowed)."""
        assignments = [f"{k}={v}" for k, v in variables.items()]
        # mod_nibblebill (mod_nibblebill.c) bills any channel carrying nibble_rate and
        # nibble_account when it looks: its SESSION_HEARTBEAT handler and its CS_HANGUP state
        # handler (process_hangup) read them then. Unsetting them here, before answer, means
        # a call fsbill enforces is never also billed by it (`name=` unsets: mod_dptools
        # base_set treats an empty value as NULL).
        assignments += [f"{name}=" for name in self.strip]
        if cutoff_after_answer_s is not None:
            app, arg = cutoff_on_answer(self.cutoff, cutoff_after_answer_s)
            assignments.append(f"execute_on_answer_fsbill_cutoff={app} {arg}")
        if warning_after_answer_s is not None:
            wapp, warg = warning_on_answer(self.cutoff, warning_after_answer_s)
            assignments.append(f"execute_on_answer_fsbill_warning={wapp} {warg}")
        self.session.execute("multiset", multiset_arg(assignments))

    def move_cutoff(self, cutoff_us: int, warning_us: int | None = None, *, now_us: int, replace: bool = True) -> bool:
        """Move the cut-off (and the warning) to their instants. `replace`: first delete every
        task of the call (the old cut-off and any warning): several sched_hangups stack and the
        earliest fires. One write; FreeSWITCH runs the commands back to back. True when
        FreeSWITCH took the new cut-off (its reply is `+OK`, fs-wire/extend.txt)."""
        commands = [f"sched_del {self.uuid}"] if replace else []
        commands.append(cutoff_api(self.cutoff, self.uuid, _when(cutoff_us, now_us)))
        if warning_us is not None:
            commands.append(warning_api(self.cutoff, self.uuid, _when(warning_us, now_us)))
        replies = self.session.api(*commands)
        return replies[1 if replace else 0].startswith("+OK")

    def warn_at(self, warning_us: int, *, now_us: int) -> None:
        self.session.api(warning_api(self.cutoff, self.uuid, _when(warning_us, now_us)))

    def reject(self, reason: str, rule: Rejection) -> bool:
        """Refuse the call as configured; True when FreeSWITCH was told to answer it with a SIP
        final response (the channel then ends with the response's own cause)."""
        self.session.execute("set", f"fsbill_result=rejected_{reason}")
        if rule.action == "respond":
            self.session.execute("respond", f"{rule.code} {rule.text}")
            return True
        if rule.prompt:
            self.session.execute("answer")
            self.session.execute("playback", rule.prompt)
        self.session.execute("hangup", rule.cause)
        return False

    def bridge(self, dial_string: str) -> None:
        self.session.execute("bridge", dial_string)

    def kill(self, cause: str) -> None:
        """End the channel now whatever runs on it (the bridge included): `uuid_kill` through
        this call's own socket (an `api` command, allowed in `full` mode while the call lives)."""
        self.session.api(f"uuid_kill {self.uuid} {cause or NORMAL_CLEARING}")

    def end(self, cause: str = "") -> None:
        """Hang the call up (the socket app owns the A leg while it runs)."""
        self.session.hangup(cause or NORMAL_CLEARING)
