"""What happens to a call, as the call machine (fsbill.core.lifecycle) is told.

Two kinds of event, both plain values:

- what FreeSWITCH said, translated from its frames by the ESL adapter (fsbill.esl), which
  alone knows header names: the answer, the bridge coming up and going down, the end of the
  `bridge` application, the hang-up, the disconnect notice, the socket closing;
- the results of the work the machine asked its driver for (fsbill.enforcer): who pays, what
  the destination costs, which vendors may carry it, whether the reservation was admitted, what
  a heartbeat did, whether a settlement or a CDR was written, whether FreeSWITCH took a command.

`Tick` is the passing of time: the driver sends one whenever the machine's `wake_us` comes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.call import Beat, LiveCall
from fsbill.core.did import Did
from fsbill.core.rating import Rate
from fsbill.core.records import Leg, PayerAccount
from fsbill.core.routing import Route


# -- from FreeSWITCH ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answered:
    at_us: int


@dataclass(frozen=True)
class Bridged:
    at_us: int
    peer_uuid: str = ""  # the B leg FreeSWITCH bridged


@dataclass(frozen=True)
class Unbridged:
    """The bridge came down. `destination` and `transfer_history` are the channel's as the
    event carries them: after a transfer out of the bridge they already name where the caller
    went (fs-wire/transfer-cutoff.txt)."""

    at_us: int
    destination: str = ""
    transfer_history: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hungup:
    cause: str
    at_us: int


@dataclass(frozen=True)
class HangupComplete:
    cause: str
    start_us: int
    answered_us: int | None
    end_us: int | None
    billsec: int
    destination: str  # where the channel was when it ended (the cut-off extension after a transfer)
    bridged_to: str = ""  # the B leg that was bridged, "" if none
    bridge_channel: str = ""  # that leg's channel name
    leg_causes: tuple[tuple[str, str], ...] = ()  # (B leg uuid, cause) per leg tried


@dataclass(frozen=True)
class ExecuteComplete:
    """An application other than `bridge` returned (not read by the machine)."""

    application: str
    data: str
    response: str
    disposition: str
    at_us: int


@dataclass(frozen=True)
class BridgeEnded:
    """The `bridge` application returned: the B leg never answered (`failure_cause` says why),
    the bridge ended after talking (`failure_cause` empty), or the channel was transferred out
    of it, which `destination` / `transfer_history` show (the core decides which:
    fsbill.core.lifecycle.transferred)."""

    failure_cause: str
    at_us: int
    destination: str = ""
    transfer_history: tuple[str, ...] = ()
    bridged_to: str = ""
    leg_causes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Disconnected:
    """FreeSWITCH's disconnect notice. With linger the final events still follow."""

    linger: bool


@dataclass(frozen=True)
class SocketClosed:
    reason: str


CallEvent = (
    Answered
    | Bridged
    | Unbridged
    | Hungup
    | HangupComplete
    | ExecuteComplete
    | BridgeEnded
    | Disconnected
    | SocketClosed
)


# -- the results of the work the machine asked for ------------------------------------------------------
@dataclass(frozen=True)
class Tick:
    """The machine's wake-up time came (a heartbeat is due, or a wait ran out)."""


@dataclass(frozen=True)
class PayerFound:
    account: PayerAccount | None  # None: no account goes by that name or caller id
    did: Did | None = None  # an inbound call's number (its owner is `account`); None: not ours


@dataclass(frozen=True)
class RateFound:
    rate: Rate | None  # None: the deck has no rate for the number


@dataclass(frozen=True)
class RoutePlanned:
    route: Route
    legs: tuple[Leg, ...]  # the usable vendors, in trial order


@dataclass(frozen=True)
class Reserved:
    """The reservation's answer: `call` when admitted, else `reason`."""

    reason: str
    call: LiveCall | None
    balance_micros: int  # the account's balance when it was decided
    refused_vendors: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DatabaseDown:
    """The database could not be reached for the work asked."""

    error: str


@dataclass(frozen=True)
class Refusal:
    """The refusal as it was carried out: `cause` is what the CDR says if the channel's own end
    is not seen ("" when FreeSWITCH answered the call with a SIP final response, which ends the
    channel with that response's own cause); `prompted` when a prompt plays first."""

    cause: str
    prompted: bool = False
    delivered: bool = True
    error: str = ""


@dataclass(frozen=True)
class CommandFailed:
    """FreeSWITCH did not take a command (the socket is gone, or it answered -ERR)."""

    command: str
    error: str


@dataclass(frozen=True)
class CutoffMoved:
    """FreeSWITCH acknowledged the cut-off at its new instant."""


@dataclass(frozen=True)
class BeatDone:
    beat: Beat | None  # None: the call is no longer live here (settled elsewhere)


@dataclass(frozen=True)
class Written:
    """A settlement or a rejection CDR was written; `cdr_result` is the CDR's result
    ("" when nothing was written: it was settled before, by someone else)."""

    cdr_result: str


WorkResult = (
    Tick
    | PayerFound
    | RateFound
    | RoutePlanned
    | Reserved
    | DatabaseDown
    | Refusal
    | CommandFailed
    | CutoffMoved
    | BeatDone
    | Written
)

Event = CallEvent | WorkResult

__all__ = [
    "Answered",
    "BeatDone",
    "BridgeEnded",
    "Bridged",
    "CallEvent",
    "CommandFailed",
    "CutoffMoved",
    "DatabaseDown",
    "Disconnected",
    "Event",
    "ExecuteComplete",
    "HangupComplete",
    "Hungup",
    "PayerFound",
    "RateFound",
    "Refusal",
    "Reserved",
    "RoutePlanned",
    "SocketClosed",
    "Tick",
    "Unbridged",
    "WorkResult",
    "Written",
]
