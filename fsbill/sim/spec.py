"""What a test or the CLI describes (`CallSpec`, `Misbehaviour`) and what the emulator
records about each call (`CallRecord`). Plain data; no FreeSWITCH behaviour lives here."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import gevent.event


@dataclass
class Misbehaviour:
    """Faults of a broken FreeSWITCH peer, for fault tests (all off by default).

    Byte-level faults (`garbage`, `oversized_content_length`, `invalid_utf8`) are written into
    the stream `fault_after_s` call-seconds after answer, or right after CHANNEL_PARK when
    `fault_after_s` is None. `half_close` shuts our sending side at that same moment.
    """

    reply_delay_s: float = 0.0  # real seconds before each command/api reply
    drop_after_s: float | None = None  # call-seconds after answer: the socket dies (RST)
    drop_kills_call: bool = False  # the drop is a crashed switch: the call vanishes too
    garbage: bool = False
    oversized_content_length: bool = False
    invalid_utf8: bool = False
    fault_after_s: float | None = None
    silent: bool = False  # after the connect reply, never send anything again
    half_close: bool = False


@dataclass
class CallSpec:
    """One inbound call as the dialplan hands it to the socket app.

    B leg: answers `answer_after_s` call-seconds after `bridge` starts; with `fail_cause` it
    fails with that cause at that moment instead; with `answer_after_s=None` it rings for
    `ring_s` and fails with `fail_cause` or NO_ANSWER (FreeSWITCH's originate timeout is 60 s).
    Caller: hangs up `talk_s` call-seconds after answer (None: never by itself); the callee
    hangs up `callee_talk_s` after answer (None: never), which ends the bridge only.
    `after_socket` is the dialplan action after `socket` (run when the socket app returns
    with the channel still up), as in dialplan/fsbill_prepaid.xml.

    `answered_before_s`: something before the socket (an IVR, a PIN prompt, a top-up menu)
    answered the channel this many call-seconds before it reached the socket. It arrives
    answered: the connect reply carries Caller-Channel-Answered-Time and
    variable_answer_epoch / variable_answer_uepoch, Answer-State `answered`, and
    execute_on_answer / api_on_answer set by the app never run for it
    (switch_channel_perform_mark_answered does nothing on an answered channel; measured on
    FreeSWITCH 1.10.12, ESL-NOTES.md). Its bridge comes up when the B leg answers
    (`answer_after_s` after `bridge`): CHANNEL_BRIDGE, bridge_* variables; `talk_s` then
    counts from the bridge, not from the IVR's answer.

    `dialplan`: extensions the channel can be transferred to (by `transfer`,
    `sched_transfer`, `uuid_transfer`), each a list of actions `app arg` run in order like
    an XML extension's: any emulated application, plus `socket [host:port]`, which hands the
    same channel (same uuid) to the outbound socket again - a new connection, Caller-Profile-
    Index one higher. A transfer back to `destination_number`, unless scripted here, runs
    `socket` then `after_socket` again. An extension not listed is the cut-off extension
    (dialplan/fsbill_cutoff.xml): answer, an announcement of the Switch's `announce_s`, hangup.
    Example, a top-up menu that sends the caller back to the billed extension:
    `dialplan={"fsbill_cutoff": ["playback ivr/topup.wav", "transfer 4915112345678 XML public"]}`.

    `directory_variables`: variables the channel had before its dialplan ran (the user
    directory, the SIP profile, origination variables); `variables` are what the dialplan
    set before `socket`. The difference matters to mod_nibblebill, whose CS_EXECUTE handler
    runs before the extension's actions (see nibblebill.py).

    `failover_causes`: for a failover bridge `a|b|c`, the causes with which the first legs
    fail in turn (each `leg_fail_after_s` after it was tried); the next leg then answers or
    fails as described above. Empty: the first leg is the one that answers or fails. With
    `failover_early_media` those legs give early media before they fail, as a loopback leg
    whose extension refuses does (fs-wire/lcr-failover.txt); a SIP 486 gives none.
    """

    uuid: str | None = None
    caller_id_number: str = "15551230000"
    caller_id_name: str = ""
    destination_number: str = "4915112345678"
    variables: dict[str, str] = field(default_factory=dict)
    answer_after_s: float | None = 1.0
    fail_cause: str | None = None
    ring_s: float = 60.0
    talk_s: float | None = None
    callee_talk_s: float | None = None
    early_media: bool = True
    context: str = "public"
    network_addr: str = "192.0.2.10"
    async_mode: bool = True
    full: bool = True
    after_socket: str | None = "respond 503 Service Unavailable"
    max_duration_s: float | None = None  # the caller's patience; None = unlimited
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    answered_before_s: float | None = None
    directory_variables: dict[str, str] = field(default_factory=dict)
    dialplan: dict[str, list[str]] = field(default_factory=dict)
    failover_causes: list[str] = field(default_factory=list)
    leg_fail_after_s: float = 0.5
    failover_early_media: bool = False  # the failing legs give early media first (loopback does)


@dataclass
class CallRecord:
    uuid: str
    spec: CallSpec
    commands: list[tuple[int, str]] = field(default_factory=list)
    applications: list[tuple[str, str]] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    connected_us: int | None = None
    answered_us: int | None = None
    bridged_us: int | None = None
    unbridged_us: int | None = None
    ended_us: int | None = None
    created_us: int | None = None
    hangup_cause: str | None = None
    ended_by: str | None = None
    responded: str | None = None
    transferred_to: str | None = None
    transfers: list[tuple[int, str]] = field(default_factory=list)  # (at_us, extension) per transfer
    connects: list[int] = field(default_factory=list)  # connected_us of each socket visit
    hangup_by: str | None = None  # what finally hung the channel up (ended_by: what ended the billed part)
    unbridges: list[tuple[int, int]] = field(default_factory=list)  # (bridged_us, unbridged_us) per bridge
    nibblebill_debits: list[tuple[int, str, str]] = field(default_factory=list)  # (at_us, account, amount)
    nibblebill_actions: list[tuple[int, str, str]] = field(default_factory=list)  # (at_us, lowbal|nobal, action)
    heartbeats: list[int] = field(default_factory=list)  # SESSION_HEARTBEAT instants
    broadcasts: list[tuple[int, str, str]] = field(default_factory=list)
    fired_tasks: list[tuple[str, str, int]] = field(default_factory=list)
    scheduled_tasks: list[tuple[str, str, int, int]] = field(default_factory=list)  # kind, arg, runtime_s, at_us
    socket_closed_by_app_us: int | None = None
    socket_closed_us: int | None = None
    app_error: str | None = None
    bridge_failed: str | None = None
    failed_legs: list[tuple[str, str]] = field(default_factory=list)  # (dial target, cause) per failed B leg
    bridged_to: str | None = None  # the dial target of the B leg that answered
    setup_latency_s: float | None = None  # real seconds: TCP connected -> `bridge` received
    sent: list[bytes] = field(default_factory=list, repr=False)  # every frame written, in order
    done: gevent.event.Event = field(default_factory=gevent.event.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the call is over (channel destroyed, socket closed); real seconds."""
        return self.done.wait(timeout)

    @property
    def talk_us(self) -> int | None:
        """Answer (or, for a channel answered before the socket, the bridge) to the end of
        the call or of the first bridge, whichever came first."""
        start = self.bridged_us if self.spec.answered_before_s is not None else self.answered_us
        if start is None:
            return None
        end = self.ended_us
        if self.unbridged_us is not None and (end is None or self.unbridged_us < end):
            end = self.unbridged_us
        return None if end is None else end - start

    @property
    def talk_s(self) -> Fraction | None:
        us = self.talk_us
        return None if us is None else Fraction(us, 1_000_000)

    @property
    def billsec(self) -> int:
        value = self.variables.get("billsec", "0")
        return int(value) if value.isdigit() else 0

    def commands_named(self, prefix: str) -> list[str]:
        return [c for _, c in self.commands if c.startswith(prefix)]

    def sent_frames(self) -> list[bytes]:
        return list(self.sent)


__all__ = ["CallRecord", "CallSpec", "Misbehaviour"]
