"""Prometheus metrics scraped over HTTP from a running node during emulated traffic, checked
against the CDRs the same traffic wrote."""

import random
import urllib.request
from urllib.error import HTTPError

import gevent
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rig import Rig, charged_total

from fsbill.core.money import Money


def scrape(port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.fixture
def rig(sqlite_url):
    r = Rig(sqlite_url, time_scale=25, metrics_listen="127.0.0.1:0")
    yield r
    r.close()


def test_metrics_agree_with_the_cdrs(rig):
    port = rig.node.metrics_server.server_port
    rig.account("acme", "20.00")
    rig.account("frozen", "5.00")
    from fsbill.db import ledger

    ledger.set_status(rig.store, "frozen", "suspended", rig.clock.now_us())
    rnd = random.Random(7)
    specs = [rig.spec(talk_s=rnd.randint(5, 60)) for _ in range(30)]
    specs += [rig.spec(account="frozen") for _ in range(3)]
    specs += [rig.spec(answer_after_s=None, fail_cause="NO_ANSWER", ring_s=5) for _ in range(2)]
    peak_live = 0
    greenlets = [rig.switch.start_call(rig.address, s) for s in specs]
    while not all(g.ready() for g in greenlets):
        peak_live = max(peak_live, value(scrape(port), "fsbill_live_calls"))
        gevent.sleep(0.05)
    cdrs = rig.settled(len(specs))
    gevent.sleep(0.2)
    m = scrape(port)

    accepted = [c for c in cdrs if c.result != "rejected"]
    rejected = [c for c in cdrs if c.result == "rejected"]
    assert peak_live > 1
    assert value(m, "fsbill_live_calls") == 0
    assert value(m, "fsbill_reserved_amount", currency="EUR") == 0
    assert value(m, "fsbill_calls_total", result="accepted", reason="") == len(accepted)
    for reason in {c.reason for c in rejected}:
        assert value(m, "fsbill_calls_total", result="rejected", reason=reason) == sum(
            1 for c in rejected if c.reason == reason
        )
    assert total(m, "fsbill_cdrs_written_total") == len(cdrs)
    for result in {c.result for c in cdrs}:
        assert value(m, "fsbill_cdrs_written_total", result=result) == sum(1 for c in cdrs if c.result == result)
    charged = charged_total(cdrs)
    assert abs(value(m, "fsbill_charged_amount_total", currency="EUR") - charged.micros / 1e6) < 1e-6
    assert value(m, "fsbill_cutoffs_total", kind="hangup") == sum(1 for c in cdrs if c.result == "cut_off")
    assert value(m, "fsbill_setup_seconds_count") == len(accepted)
    assert total(m, "fsbill_db_seconds_count", op="reserve") >= len(accepted)
    assert value(m, "fsbill_build_info", version=__import__("fsbill").__version__) == 1
    # top-ups follow the shared ledger (seed top-ups of both accounts)
    gevent.sleep(rig.clock.real_seconds(rig.settings.heartbeat_s) + 0.3)
    assert abs(value(scrape(port), "fsbill_topups_amount_total", currency="EUR") - 25.0) < 1e-6
    assert Money.parse("25.00") - charged == rig.show("acme").balance + rig.show("frozen").balance


def test_healthz_is_ok_with_the_database_up(rig):
    # (its 503 while the database is unreachable is checked by the outage test in test_multinode)
    port = rig.node.metrics_server.server_port
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    with pytest.raises(HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5)
    assert err.value.code == 404


def test_labelled_series_exist_at_zero_before_any_call(rig):
    m = scrape(rig.node.metrics_server.server_port)
    for kind in ("hangup", "transfer"):
        assert (("fsbill_cutoffs_total", (("kind", kind),))) in m
    for reason in ("insufficient_funds", "channel_limit", "no_rate", "unknown_account", "db_error"):
        assert ("fsbill_calls_total", (("reason", reason), ("result", "rejected"))) in m
    for result in ("completed", "cut_off", "unanswered", "rejected", "recovered"):
        assert ("fsbill_cdrs_written_total", (("result", result),)) in m
    assert ("fsbill_esl_refused_total", (("reason", "not_allowed"),)) in m
    assert value(m, "fsbill_cutoffs_total", kind="hangup") == 0


def test_metrics_speak_openmetrics_and_gzip_when_asked(rig):
    import gzip

    url = f"http://127.0.0.1:{rig.node.metrics_server.server_port}/metrics"
    plain = urllib.request.urlopen(url, timeout=5)
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    asked = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    om = urllib.request.urlopen(asked, timeout=5)
    body = om.read().decode()
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF") and "fsbill_cutoffs_total" in body
    zipped = urllib.request.urlopen(urllib.request.Request(url, headers={"Accept-Encoding": "gzip"}), timeout=5)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert b"fsbill_live_calls" in gzip.decompress(zipped.read())
