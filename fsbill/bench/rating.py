"""`fsbill bench rating`: a synthetic 1,000,000-prefix deck through import, load and lookup.

What it measures (targets from issue 3): CSV import into a fresh SQLite file (<= 30 s),
loading the deck into the in-process index, lookup latency (p99 <= 50 us) and rating
decisions per second (lookup + cost + max_seconds, >= 50,000/s in one process).

The deck is shaped like a wholesale deck: country codes of 1-3 digits, then area and carrier
prefixes out to 12 digits, mostly 5-9 digits long; prices of 4 decimals spread over three
orders of magnitude; common increment schemes (1/1, 30/6, 60/60, 60/1), some connect fees,
a few minimum durations and night bands.
"""

from __future__ import annotations

import gc
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fsbill.core.money import Money

HEADER = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description,weekdays,time_from,time_to\n"
_INCREMENTS = ((1, 1), (1, 1), (30, 6), (60, 60), (60, 1), (6, 6))
_LENGTH_WEIGHTS = {1: 1, 2: 2, 3: 4, 4: 8, 5: 14, 6: 18, 7: 18, 8: 14, 9: 10, 10: 6, 11: 3, 12: 2}
AT_US = 1_795_375_769_000_000  # a fixed start instant (2026-11-22T19:29:29Z), so runs compare


def write_deck(path: Path, prefixes: int, seed: int = 7) -> list[str]:
    """Write a synthetic deck of `prefixes` distinct prefixes; returns them."""
    rng = random.Random(seed)
    lengths = list(_LENGTH_WEIGHTS)
    weights = list(_LENGTH_WEIGHTS.values())
    countries = [f"Country {i}" for i in range(250)]
    seen: set[str] = set()
    out: list[str] = []
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER)
        lines = []
        while len(out) < prefixes:
            length = rng.choices(lengths, weights)[0]
            prefix = str(rng.randrange(10 ** (length - 1), 10**length))
            if prefix in seen:
                continue
            seen.add(prefix)
            out.append(prefix)
            initial, increment = rng.choice(_INCREMENTS)
            rate = Money(rng.randrange(1, 20_000) * 100)  # 0.0001 .. 1.9999 per minute
            fee = Money(rng.randrange(1, 500) * 100) if rng.random() < 0.1 else Money(0)
            minimum = 30 if rng.random() < 0.02 else 0
            lines.append(
                f"{prefix},{rate},{fee},{initial},{increment},{minimum},{countries[int(prefix[:2]) % 250]},,,\n"
            )
            if rng.random() < 0.01 and len(out) < prefixes:
                # a cheaper night band for the same prefix, overriding the default row
                lines.append(
                    f"{prefix},{Money(rate.micros // 2)},{fee},{initial},{increment},{minimum},night,,22:00,06:00\n"
                )
            if len(lines) >= 10_000:
                handle.writelines(lines)
                lines.clear()
        handle.writelines(lines)
    return out


def _numbers(prefixes: list[str], count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    numbers = []
    for _ in range(count):
        if rng.random() < 0.9:
            base = rng.choice(prefixes)
        else:
            base = str(rng.randrange(1, 10))  # a number that may match only a short prefix
        numbers.append(base + "".join(rng.choice("0123456789") for _ in range(max(0, 13 - len(base)))))
    return numbers


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_rating_bench(
    prefixes: int = 1_000_000,
    lookups: int = 100_000,
    workdir: str | None = None,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Run the benchmark; returns its figures (times in seconds, latencies in microseconds)."""
    from fsbill.core.rating import cost, max_seconds
    from fsbill.db import Store, ledger
    from fsbill.db.rates import import_deck, load_deck

    say = say or (lambda _text: None)
    with tempfile.TemporaryDirectory(prefix="fsbill-bench-", dir=workdir) as tmp:
        deck_path = Path(tmp) / "deck.csv"
        say(f"writing a {prefixes:,}-prefix deck to {deck_path}")
        started = time.perf_counter()
        known = write_deck(deck_path, prefixes)
        write_s = time.perf_counter() - started
        with open(deck_path, encoding="utf-8") as handle:
            rows = sum(1 for _ in handle) - 1
        store = Store(f"sqlite:///{tmp}/bench.db")
        store.upgrade()
        tariff = ledger.create_tariff(store, "bench", "EUR", AT_US, timezone="Europe/Berlin")
        say("importing into SQLite")
        starts: dict[str, float] = {}

        def progress(phase: str, _done: int) -> None:
            starts.setdefault(phase, time.perf_counter())

        started = time.perf_counter()
        result = import_deck(store, "bench", deck_path, progress=progress)
        import_s = time.perf_counter() - started
        parse_s = starts["store"] - starts["parse"]
        store_s = started + import_s - starts["store"]
        say("loading the deck")
        rss_before = _rss_mb()
        started = time.perf_counter()
        deck = load_deck(store, tariff.id)
        load_s = time.perf_counter() - started
        rss_after = _rss_mb()
        store.close()

        numbers = _numbers(known, lookups)
        say(f"{lookups:,} lookups")
        gc.collect()
        gc.disable()
        try:
            latencies = []
            clock = time.perf_counter_ns
            lookup = deck.lookup
            found = 0
            for number in numbers:
                t0 = clock()
                rate = lookup(number, AT_US)
                latencies.append(clock() - t0)
                found += rate is not None
            latencies.sort()
            budget = Money.parse("12.34")
            started = time.perf_counter()
            for number in numbers:
                rate = lookup(number, AT_US)
                if rate is not None:
                    cost(rate, 125)
                    max_seconds(rate, budget, 7200)
            decide_s = time.perf_counter() - started
        finally:
            gc.enable()
    return {
        "prefixes": prefixes,
        "rows": rows,
        "imported": result.imported,
        "deck_write_s": round(write_s, 2),
        "import_s": round(import_s, 2),
        "import_parse_s": round(parse_s, 2),
        "import_store_s": round(store_s, 2),
        "import_rows_per_s": round(rows / import_s) if import_s else None,
        "load_s": round(load_s, 2),
        "deck_rss_mb": round(rss_after - rss_before),
        "lookups": lookups,
        "lookups_matched": found,
        "lookup_median_us": round(statistics.median(latencies) / 1000, 2),
        "lookup_p99_us": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000, 2),
        "lookup_max_us": round(latencies[-1] / 1000, 1),
        "decisions_per_s": round(lookups / decide_s) if decide_s else None,
        "python": sys.version.split()[0],
    }
