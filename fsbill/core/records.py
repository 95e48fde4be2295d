"""The plain records a call's decisions exchange with the adapters.

Who pays (`PayerAccount`), which vendors a least-cost bridge tries (`Leg`) and what FreeSWITCH
reported about that bridge (`BridgeOutcome`), how a billed leg ended (`CallEnd`) and what a
refused call leaves behind (`RejectionRecord`). The database adapter reads and writes them; the
call machine (fsbill.core.lifecycle) builds them; none of them knows where it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.money import Money
from fsbill.core.rating import Rate


@dataclass(frozen=True)
class PayerAccount:
    """The account a call is billed to, as authorization finds it."""

    id: int
    code: str
    tariff_id: int
    currency: str
    status: str  # active | suspended | closed


@dataclass(frozen=True)
class Leg:
    """One vendor in a call's failover bridge."""

    vendor_id: int
    vendor: str
    leg_uuid: str  # the B leg's uuid, given to FreeSWITCH as origination_uuid
    dial_string: str
    rate: Rate


@dataclass(frozen=True)
class BridgeOutcome:
    """What FreeSWITCH reported about the bridge, translated by the ESL adapter."""

    answered_leg: str = ""  # last_bridge_to: the B leg's uuid
    leg_causes: tuple[tuple[str, str], ...] = ()  # originate_causes: (leg uuid, cause) in order


@dataclass(frozen=True)
class CallEnd:
    """How a billed leg ended, as its settlement needs it."""

    uuid: str
    visit: int  # 0 for a call that was never reserved (its visit is numbered when it is written)
    answered_us: int | None  # billing window start (the bridge coming up)
    end_us: int | None  # billing window end
    start_us: int
    billsec: int
    hangup_cause: str
    result: str
    now_us: int
    bridge: BridgeOutcome | None = None  # what FreeSWITCH reported about a least-cost bridge
    bleg_uuid: str = ""  # the B leg FreeSWITCH bridged this call to (last_bridge_to), "" if none


@dataclass(frozen=True)
class RejectionRecord:
    """The CDR of a refused call."""

    uuid: str
    account_code: str
    node: str
    caller: str
    destination: str
    currency: str
    start_us: int
    reason: str
    hangup_cause: str
    balance: Money | None = None
    accountcode: str = ""
    caller_id_name: str = ""
    context: str = ""
    direction: str = "outbound"  # outbound | inbound (docs/DIDS.md)
    did: str = ""  # the inbound number called


__all__ = ["BridgeOutcome", "CallEnd", "Leg", "PayerAccount", "RejectionRecord"]
