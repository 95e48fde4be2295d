"""What a call's machine (fsbill.core.lifecycle) asks its driver to do, and the settings its
decisions depend on. Each command is a plain value; fsbill.enforcer carries it out against the
event socket, the database or the node's own books."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fsbill.core.call import CutoffMark, LiveCall, Payer
from fsbill.core.did import Did
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.core.records import CallEnd, Leg, RejectionRecord


@dataclass(frozen=True)
class Config:
    """The settings a call's decisions depend on."""

    policy: GrantPolicy
    mark: CutoffMark
    cutoff_mode: str  # hangup | transfer (the cut-offs metric's label)
    node: str
    heartbeat_s: int
    max_ring_s: int
    route_template: str = ""
    lcr: bool = False
    international_prefix: str = "00"
    nibblebill_compat: bool = False
    nibblebill_allow_zero_rate: bool = False
    on_db_error: str = "reject"  # reject | allow
    db_error_grant_s: int = 60
    on_suspend: str = "finish_grant"  # finish_grant | cut
    defer_writes: bool = False  # a pending-writes queue keeps what the database refused


# -- commands ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subscribe:
    bridge_events: bool  # CHANNEL_BRIDGE too: a pre-answered channel's billing start, the LCR carrier


@dataclass(frozen=True)
class FindPayer:
    """Who pays: the account the payer names, or (`payer.by == "did"`) the owner of the inbound
    number it names, with that number."""

    payer: Payer


@dataclass(frozen=True)
class FindRate:
    tariff_id: int
    number: str
    at_us: int  # rated as of the call's start


@dataclass(frozen=True)
class PlanRoute:
    currency: str
    rate: Rate
    number: str
    at_us: int


@dataclass(frozen=True)
class Reserve:
    uuid: str
    account_id: int
    rate: Rate
    number: str
    legs: tuple[Leg, ...]
    caller: str
    accountcode: str
    caller_id_name: str
    context: str
    did: Did | None = None  # an inbound call: admitted on the number's limits and on_empty policy


@dataclass(frozen=True)
class RoutesStale:
    """The router's view of the vendors was stale: read it again for the next call."""


@dataclass(frozen=True)
class Refuse:
    reason: str  # the rejection reason; the driver carries out its configured rule


@dataclass(frozen=True)
class WriteRejection:
    record: RejectionRecord


@dataclass(frozen=True)
class Arm:
    """Set the call's variables and, for a channel not answered yet, the cut-off (and warning)
    FreeSWITCH arms itself at answer, that many seconds after it."""

    variables: tuple[tuple[str, str], ...]
    cutoff_after_answer_s: int | None
    warning_after_answer_s: int | None


@dataclass(frozen=True)
class ArmFromNow:
    """The cut-off `after_s` from now, relative (a channel answered before the socket)."""

    after_s: int


@dataclass(frozen=True)
class Bridge:
    dial_string: str


@dataclass(frozen=True)
class MoveCutoff:
    cutoff_us: int
    warning_us: int | None


@dataclass(frozen=True)
class WarnAt:
    warning_us: int


@dataclass(frozen=True)
class Kill:
    """End the channel now, whatever runs on it (a suspended account under on_suspend: cut)."""

    reason: str  # the rejection reason whose cause to use


@dataclass(frozen=True)
class End:
    """Hang the A leg up (the socket app owns it while the bridge application has returned)."""

    cause: str  # "" for a normal clearing


@dataclass(frozen=True)
class KeepCarrier:
    uuid: str
    visit: int
    leg_uuid: str


@dataclass(frozen=True)
class RecordAnswer:
    call: LiveCall


@dataclass(frozen=True)
class Beat:
    uuid: str
    visit: int
    extend: bool
    known: LiveCall  # what the row does not keep: whether the grant is final, the warning armed


@dataclass(frozen=True)
class Settle:
    end: CallEnd


@dataclass(frozen=True)
class DeferSettlement:
    end: CallEnd
    currency: str
    held: Money


@dataclass(frozen=True)
class DeferUnreserved:
    payer: Payer
    destination: str
    end: CallEnd


@dataclass(frozen=True)
class DeferRejection:
    record: RejectionRecord


@dataclass(frozen=True)
class Follow:
    """This node now enforces the leg (uuid, visit)."""

    leg: tuple[str, int]


@dataclass(frozen=True)
class Release:
    """This node lost the leg's socket before its end: it may be re-adopted."""

    leg: tuple[str, int]


@dataclass(frozen=True)
class HoldChanged:
    """What the call holds changed by `delta` (the reserved gauge)."""

    currency: str
    delta: Money


@dataclass(frozen=True)
class Note:
    """Something to log and count: `kind` is the log event's name."""

    kind: str
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Finish:
    """The call's life on this socket is over."""


Command = (
    Subscribe
    | FindPayer
    | FindRate
    | PlanRoute
    | Reserve
    | RoutesStale
    | Refuse
    | WriteRejection
    | Arm
    | ArmFromNow
    | Bridge
    | MoveCutoff
    | WarnAt
    | Kill
    | End
    | KeepCarrier
    | RecordAnswer
    | Beat
    | Settle
    | DeferSettlement
    | DeferUnreserved
    | DeferRejection
    | Follow
    | Release
    | HoldChanged
    | Note
    | Finish
)

__all__ = [
    "Arm",
    "ArmFromNow",
    "Beat",
    "Bridge",
    "Command",
    "Config",
    "DeferRejection",
    "DeferSettlement",
    "DeferUnreserved",
    "End",
    "FindPayer",
    "FindRate",
    "Finish",
    "Follow",
    "HoldChanged",
    "KeepCarrier",
    "Kill",
    "MoveCutoff",
    "Note",
    "PlanRoute",
    "RecordAnswer",
    "Refuse",
    "Release",
    "Reserve",
    "RoutesStale",
    "Settle",
    "Subscribe",
    "WarnAt",
    "WriteRejection",
]
