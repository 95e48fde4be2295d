"""mod_nibblebill loaded in the emulated switch (src/mod/applications/mod_nibblebill/mod_nibblebill.c).

So a test can see whether a channel fsbill enforces is also billed by mod_nibblebill, this
models what the module checks and when, and records every debit it would have made
(`CallRecord.nibblebill_debits`: at_us, account, amount as `%f`):

- it acts on any channel carrying both `nibble_rate` (per minute) and `nibble_account`
  (var_name_rate / var_name_account) *at the moment it looks*;
- it looks from its state handlers (nibble_state_handler, registered for every channel with
  switch_core_add_state_handler): on_routing → process_hangup (do_billing), on_execute →
  sched_billing (with `global_heartbeat` > 0, switch_core_session_enable_heartbeat), on_hangup
  → process_hangup (the final bill: rounding, minimum, final_bill_done), and from its
  SESSION_HEARTBEAT event handler (do_billing);
- the global state handlers of CS_EXECUTE run before the extension's actions, so the
  heartbeat is only armed for variables the channel had before its dialplan ran
  (`CallSpec.directory_variables`), or, after a transfer, before the new extension;
- do_billing bills nothing before answer (it only checks the balance), then from the answer
  (times->answered) to now, in doubles: rate / 1e6 / 60 × elapsed µs (or by
  `nibble_increment` blocks), remembering lastts; at CS_HANGUP it adds the rounding /
  minimum excess, always calling bill_event (a 0.000000 debit too);
- the debit is `UPDATE <table> SET cash = cash - %f WHERE account = '...'`: here
  `balances[account] -= amount` (a missing account changes nothing; the debit is still
  recorded, as the UPDATE still "succeeds").
Not modelled: the lowbal / nobal actions (recorded in `CallRecord.nibblebill_actions`, not
run), pause/resume/adjust/reset, custom SQL.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsbill.sim.state import SessionState as Session


def atof(text: str | None) -> float:
    """C's atof: the longest leading number, 0.0 if none."""
    m = re.match(r"\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)", text or "")
    return float(m.group(1)) if m else 0.0


@dataclass
class NibbleData:
    """nibble_data_t, the channel's private `_nibble_data_`."""

    lastts: int  # µs
    total: float = 0.0
    final_bill_done: bool = False
    lowbal_action_executed: bool = False


@dataclass
class Nibblebill:
    """nibblebill.conf.xml: `global_heartbeat` (0 = off), the table's balances, the thresholds."""

    global_heartbeat: int = 0
    balances: dict[str, float] = field(default_factory=dict)
    lowbal_amt: float = 0.0
    nobal_amt: float = 0.0
    lowbal_action: str = "play ding"
    nobal_action: str = "hangup"
    var_name_rate: str = "nibble_rate"
    var_name_account: str = "nibble_account"

    # ---- the state handlers ---------------------------------------------------------------
    def on_routing(self, call: Session) -> None:
        self.process_hangup(call)

    def on_execute(self, call: Session) -> None:
        """sched_billing."""
        if self._billing_vars(call) is None:
            return
        if self.global_heartbeat > 0:
            call.enable_heartbeat(self.global_heartbeat)

    def on_hangup(self, call: Session) -> None:
        self.process_hangup(call)

    def on_heartbeat(self, call: Session) -> None:
        """event_handler, bound to SESSION_HEARTBEAT."""
        self.do_billing(call)

    def process_hangup(self, call: Session) -> None:
        self.do_billing(call)
        account = call.variables.get(self.var_name_account)
        if account:
            call._setvar("nibble_current_balance", f"{self.get_balance(account):f}")

    # ---- billing ----------------------------------------------------------------------------
    def _billing_vars(self, call: Session) -> tuple[str, str] | None:
        rate = call.variables.get(self.var_name_rate)
        account = call.variables.get(self.var_name_account)
        return None if rate is None or account is None else (rate, account)

    def get_balance(self, account: str) -> float:
        return self.balances.get(account, 0.0)

    def bill_event(self, call: Session, amount: float, account: str, at_us: int) -> None:
        if account in self.balances:
            self.balances[account] -= amount
        call.rec.nibblebill_debits.append((at_us, account, f"{amount:f}"))

    def do_billing(self, call: Session) -> None:
        found = self._billing_vars(call)
        if found is None:
            return
        rate_text, account = found
        v = call.variables
        ts = call._now()
        minimum_charge = atof(v.get("nibble_minimum")) if v.get("nibble_minimum") else 0.0
        rounding_factor = math.pow(10, atof(v.get("nibble_rounding"))) if v.get("nibble_rounding") else 0.0
        nobal_amt = atof(v["nobal_amt"]) if v.get("nobal_amt") else self.nobal_amt
        lowbal_amt = atof(v["lowbal_amt"]) if v.get("lowbal_amt") else self.lowbal_amt
        if call.answered_us < 1:
            if self.get_balance(account) - minimum_charge <= nobal_amt:
                call.rec.nibblebill_actions.append((ts, "nobal", self.nobal_action))
            return
        data: NibbleData | None = call.nibble_data
        if data is not None and data.final_bill_done:
            return
        if data is None:
            data = NibbleData(lastts=call.answered_us)
        if ts - data.lastts >= 0:
            rate = atof(rate_text)
            increment = v.get("nibble_increment")
            if increment:
                inc = int(atof(increment))
                elapsed = ts - data.lastts
                if elapsed // 1_000_000 <= inc:
                    units = inc * 1_000_000
                else:
                    units = math.ceil(elapsed / (inc * 1_000_000.0)) * inc * 1_000_000
                amount = (rate / 1_000_000 / 60) * units
                data.lastts += units
            else:
                amount = (rate / 1_000_000 / 60) * (ts - data.lastts)
                data.lastts = ts
            self.bill_event(call, amount, account, ts)
            data.total += amount
            call._setvar("nibble_total_billed", f"{data.total:f}")
            if call.state == "CS_HANGUP":
                excess = 0.0
                # ceilf((float)(total * rounding_factor)): the product goes through a C float
                rounded = data.total
                if rounding_factor > 0:
                    product = struct.unpack("f", struct.pack("f", data.total * rounding_factor))[0]
                    rounded = math.ceil(product) / rounding_factor
                if rounded < minimum_charge:
                    excess = minimum_charge - data.total
                elif data.total < rounded:
                    excess = rounded - data.total
                self.bill_event(call, excess, account, ts)
                data.total += excess
                call._setvar("nibble_total_billed", f"{data.total:f}")
                data.final_bill_done = True
        call.nibble_data = data
        if call.state not in ("CS_REPORTING", "CS_HANGUP"):
            balance = self.get_balance(account)
            if not data.lowbal_action_executed and balance <= lowbal_amt:
                call.rec.nibblebill_actions.append((ts, "lowbal", self.lowbal_action))
                data.lowbal_action_executed = True
            if balance <= nobal_amt:
                call.rec.nibblebill_actions.append((ts, "nobal", self.nobal_action))


__all__ = ["Nibblebill", "NibbleData", "atof"]
