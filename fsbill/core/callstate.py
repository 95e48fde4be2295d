"""The state of a call in the call machine (fsbill.core.lifecycle): its phase and what the
machine has learnt of it so far, one frozen value that each transition replaces.

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.call import Channel, LiveCall, Payer
from fsbill.core.commands import Command, Config
from fsbill.core.did import Did
from fsbill.core.frozen import evolve
from fsbill.core.grant import US
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.core.records import CallEnd, Leg, PayerAccount, RejectionRecord

# The hang-up cause written on the CDR of a visit that was transferred out of its bridge (the
# channel itself lives on). FreeSWITCH's own bridge_hangup_cause then is NORMAL_CLEARING.
TRANSFER_CAUSE = "BLIND_TRANSFER"


@dataclass(frozen=True)
class Refused:
    reason: str
    detail: str = ""
    account_code: str = ""
    currency: str = ""
    balance: Money | None = None


# The phases, in the order a call goes through them.
PAYER, RATE, ROUTE, RESERVE = "finding_payer", "rating", "routing", "reserving"
REFUSING, REFUSED, WRITING_REJECTION = "refusing", "refused", "writing_rejection"
ARMING, LIVE, SETTLING, TRANSFERRED, DONE = "arming", "live", "settling", "transferred", "done"


@dataclass(frozen=True)
class CallState:
    phase: str
    channel: Channel
    pre_answered: bool  # answered before the socket: billing starts when the bridge comes up
    config: Config
    payer: Payer | None = None
    account: PayerAccount | None = None
    number: str = ""
    rate: Rate | None = None
    dial: str = ""
    legs: tuple[Leg, ...] = ()
    reserved: bool = True  # False only for a call let through while the database was down
    call: LiveCall | None = None  # THE record of the call while it lives
    refused: Refused | None = None
    refusal_cause: str = ""
    unbridged_us: int | None = None
    hangup_cause: str = ""
    cut_for_suspension: bool = False
    wake_us: int | None = None  # when the driver sends the next Tick (a heartbeat, a wait's end)
    answer_unrecorded: bool = False  # a pre-answered call's answer waits for its cut-off's move
    rejection: RejectionRecord | None = None  # the refused call's CDR, once its end is known
    settlement: CallEnd | None = None  # the settlement in flight
    after_settling: str = DONE  # where a settlement in flight leads (TRANSFERRED for a transfer)
    did: Did | None = None  # an inbound call's number, once found (docs/DIDS.md)
    unbilled: bool = False  # let through unbilled (an inbound number's on_empty: free): never cut for suspension

    @property
    def leg(self) -> tuple[str, int] | None:
        return (self.call.uuid, self.call.visit) if self.call is not None else None

    @property
    def over(self) -> bool:
        return self.phase == DONE


Step = tuple[CallState, list[Command]]


def schedule_beat(state: CallState, now_us: int) -> CallState:
    return evolve(state, wake_us=now_us + state.config.heartbeat_s * US)
