"""sofia's SIP status -> cause mapping (sofia_glue_sip_cause_to_freeswitch) and DIALSTATUS;
FreeSWITCH's cause table itself (switch_types.h) is the product's, in fsbill/causes.py."""

from __future__ import annotations

from fsbill.causes import CAUSES, str2cause
from fsbill.causes import q850 as _q850


def q850(cause: str) -> int:
    """hangup_cause_q850 as the emulator sends it: an unknown name reports 0 (NONE)."""
    return _q850(cause) or 0


_SIP_TO_CAUSE = {
    200: "NORMAL_CLEARING",
    401: "CALL_REJECTED",
    402: "CALL_REJECTED",
    403: "CALL_REJECTED",
    407: "CALL_REJECTED",
    603: "CALL_REJECTED",
    608: "CALL_REJECTED",
    607: "UNWANTED",
    404: "UNALLOCATED_NUMBER",
    485: "NO_ROUTE_DESTINATION",
    604: "NO_ROUTE_DESTINATION",
    408: "RECOVERY_ON_TIMER_EXPIRE",
    504: "RECOVERY_ON_TIMER_EXPIRE",
    410: "NUMBER_CHANGED",
    413: "INTERWORKING",
    414: "INTERWORKING",
    416: "INTERWORKING",
    420: "INTERWORKING",
    421: "INTERWORKING",
    423: "INTERWORKING",
    505: "INTERWORKING",
    513: "INTERWORKING",
    480: "NO_USER_RESPONSE",
    400: "NORMAL_TEMPORARY_FAILURE",
    481: "NORMAL_TEMPORARY_FAILURE",
    500: "NORMAL_TEMPORARY_FAILURE",
    503: "NORMAL_TEMPORARY_FAILURE",
    486: "USER_BUSY",
    600: "USER_BUSY",
    484: "INVALID_NUMBER_FORMAT",
    488: "INCOMPATIBLE_DESTINATION",
    606: "INCOMPATIBLE_DESTINATION",
    502: "NETWORK_OUT_OF_ORDER",
    405: "SERVICE_UNAVAILABLE",
    406: "SERVICE_NOT_IMPLEMENTED",
    415: "SERVICE_NOT_IMPLEMENTED",
    501: "SERVICE_NOT_IMPLEMENTED",
    482: "EXCHANGE_ROUTING_ERROR",
    483: "EXCHANGE_ROUTING_ERROR",
    487: "ORIGINATOR_CANCEL",
    428: "NO_IDENTITY",
    429: "BAD_IDENTITY_INFO",
    437: "UNSUPPORTED_CERTIFICATE",
    438: "INVALID_IDENTITY",
}


def sip_to_cause(status: int) -> str:
    return _SIP_TO_CAUSE.get(status, "NORMAL_UNSPECIFIED")


# switch_ivr_originate.c, after a failed attempt: DIALSTATUS by cause, else the cause's name.
DIALSTATUS = {
    "ORIGINATOR_CANCEL": "CANCEL",
    "USER_BUSY": "BUSY",
    "NO_ANSWER": "NOANSWER",
    "DESTINATION_OUT_OF_ORDER": "INVALIDARGS",
    "INVALID_PROFILE": "INVALIDARGS",
    "CALL_REJECTED": "DONTCALL",
}

__all__ = ["CAUSES", "DIALSTATUS", "q850", "sip_to_cause", "str2cause"]
