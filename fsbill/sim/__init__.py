"""A wire-faithful emulator of FreeSWITCH's side of the outbound event socket.

`Switch(clock)` places calls into an app listening for FreeSWITCH's `socket` application
(`async full`), speaks the event-socket protocol exactly as FreeSWITCH 1.10 does, and records
what happened to each call (`CallRecord`). Used by the tests, `fsbill simulate` and the
benchmarks. The modules follow the FreeSWITCH files they imitate (see fsbill/sim/switch.py).
"""

from fsbill.sim.nibblebill import Nibblebill
from fsbill.sim.switch import CallRecord, CallSpec, ChannelView, Misbehaviour, Subscription, Switch

__all__ = ["CallRecord", "CallSpec", "ChannelView", "Misbehaviour", "Nibblebill", "Subscription", "Switch"]
