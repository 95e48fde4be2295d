"""`fsbill bench routing`: what least-cost routing adds to a call's setup.

Two figures: the routing decision (each vendor's deck looked up in the node's deck cache, the
pure choice, the legs built) and the reservation with a channel taken on every vendor of the
bridge, against the same reservation without vendors, on SQLite or a given database.
"""

from __future__ import annotations

import io
import random
import statistics
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db import vendors as dbvendors
from fsbill.db.rates import DeckCache
from fsbill.lcr import Router

NOW_US = 1_800_000_000_000_000


def _quantiles_us(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return round(statistics.median(ordered) * 1e6, 1), round(ordered[int(len(ordered) * 0.99)] * 1e6, 1)


def run_routing_bench(
    vendors: int = 10,
    prefixes: int = 20_000,
    decisions: int = 5_000,
    reservations: int = 500,
    legs: int = 3,
    database: str | None = None,
    say: Callable[[str], None] = lambda _text: None,
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url = database or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = Store(url)
        try:
            store.upgrade()
            return _run(store, vendors, prefixes, decisions, reservations, legs, say)
        finally:
            store.close()


def _run(store: Store, vendors: int, prefixes: int, decisions: int, reservations: int, legs: int, say) -> dict:
    rnd = random.Random(16)
    tariff = f"bench-{uuidlib.uuid4().hex[:8]}"
    ledger.create_tariff(store, tariff, "EUR", NOW_US)
    account = ledger.create_account(store, tariff, tariff, NOW_US)
    ledger.topup(store, account.code, Money.parse("1000000"), NOW_US, reference="bench")
    keys = sorted({"49" + str(rnd.randint(0, 10**6)) for _ in range(prefixes)})
    say(f"importing {vendors} vendor decks of {len(keys):,} prefixes")
    for i in range(vendors):
        name = f"{tariff}-v{i}"
        dbvendors.create_vendor(store, name, f"sofia/gateway/{name}/{{destination}}", NOW_US)
        deck = "prefix,rate\n" + "".join(f"{p},0.{rnd.randint(10, 99):02d}\n" for p in keys)
        dbvendors.import_rates(store, name, io.StringIO(deck))
    router = Router(store, DeckCache(store, refresh_s=3600), refresh_s=3600)
    sell = Rate("49", Money.parse("1.00"))
    numbers = ["49" + str(rnd.randint(0, 10**9)) for _ in range(decisions)]
    router.plan("EUR", sell, numbers[0], NOW_US, NOW_US)  # loads the decks
    say(f"timing {decisions:,} routing decisions")
    plan_s = []
    for number in numbers:
        started = time.perf_counter()
        router.plan("EUR", sell, number, NOW_US, NOW_US)
        plan_s.append(time.perf_counter() - started)
    policy = GrantPolicy.build(120, 14400, 1, 60, 10)

    def reserve(vendor_legs: tuple) -> float:
        started = time.perf_counter()
        dbcalls.reserve(
            store,
            uuid=str(uuidlib.uuid4()),
            account_id=account.id,
            rate=sell,
            policy=policy,
            node="bench",
            caller="1",
            destination="4930",
            now_us=NOW_US,
            lease_until_us=NOW_US + 10**7,
            max_ring_s=120,
            vendor_legs=vendor_legs,
        )
        return time.perf_counter() - started

    say(f"timing {reservations:,} reservations without and with {legs} vendor legs")
    plain = [reserve(()) for _ in range(reservations)]
    with_legs = [reserve(router.plan("EUR", sell, n, NOW_US, NOW_US).legs[:legs]) for n in numbers[:reservations]]
    plan_median, plan_p99 = _quantiles_us(plan_s)
    plain_median, plain_p99 = _quantiles_us(plain)
    legs_median, legs_p99 = _quantiles_us(with_legs)
    return {
        "database": store.kind,
        "vendors": vendors,
        "prefixes": len(keys),
        "decisions": decisions,
        "plan_median_us": plan_median,
        "plan_p99_us": plan_p99,
        "reservations": reservations,
        "legs": legs,
        "reserve_median_us": plain_median,
        "reserve_p99_us": plain_p99,
        "reserve_with_legs_median_us": legs_median,
        "reserve_with_legs_p99_us": legs_p99,
    }


__all__ = ["run_routing_bench"]
