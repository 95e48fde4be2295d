"""A wire-faithful emulator of FreeSWITCH's side of the outbound event socket.

`Switch(clock)` places calls into an app listening for FreeSWITCH's `socket` application
(`async full`), speaks the event-socket protocol exactly as FreeSWITCH 1.10 does, and records
what happened to each call (`CallRecord`). Used by the tests, `fsbill simulate` and the
benchmarks.
"""

from fsbill.sim.switch import CallRecord, CallSpec, Misbehaviour, Switch

__all__ = ["CallRecord", "CallSpec", "Misbehaviour", "Switch"]
