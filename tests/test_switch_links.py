"""`switches:` / `cdr_intake:` config, the inbound client against the emulated event socket,
`fsbill switches`, the takeover guard in the database, and socket activation."""

from __future__ import annotations

import json

import gevent
import pytest
import yaml
from migrated import migrate_fresh

from fsbill.cli.main import main
from fsbill.clock import Clock
from fsbill.config import SwitchConfig, load_settings
from fsbill.core.call import Payer
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money, RoundingRule
from fsbill.core.rating import Rate
from fsbill.db import Store, ledger
from fsbill.db import adoption as dbadoption
from fsbill.db import calls as dbcalls
from fsbill.errors import ConfigError
from fsbill.esl.inbound import SwitchConnection
from fsbill.sim import Switch
from fsbill.sim.inbound import InboundServer


# -- config ------------------------------------------------------------------------------------
def test_switches_and_cdr_intake_are_read_as_written():
    s = load_settings(
        None,
        {
            "switches": [
                {"name": "fs1", "event_socket": "127.0.0.1:8021", "password": "ClueCon"},
                {"name": "fs2", "event_socket": "[::1]:8021", "password": "x"},
            ],
            "cdr_intake": {"listen": "127.0.0.1:8085", "user": "fs", "password": "pw"},
        },
    )
    assert [c.name for c in s.switches] == ["fs1", "fs2"]
    assert s.switches[1].address() == ("::1", 8021)
    assert s.cdr_intake.address() == ("127.0.0.1", 8085)
    assert load_settings(None, {}).switches == ()
    assert load_settings(None, {}).cdr_intake.address() is None  # off by default


@pytest.mark.parametrize(
    "data, message",
    [
        ({"switches": "fs1"}, "switches: expected a list"),
        ({"switches": [{"event_socket": "1.2.3.4:8021"}]}, "every switch needs a name"),
        ({"switches": [{"name": "a"}, {"name": "a"}]}, "switches.a: two switches share this name"),
        ({"switches": [{"name": "a", "event_socket": "nohost"}]}, "switches.a.event_socket: expected HOST:PORT"),
        ({"switches": [{"name": "a", "password": ""}]}, "switches.a.password"),
        ({"switches": [{"name": "a", "pasword": "x"}]}, "unknown config key 'switches.a.pasword'"),
        ({"cdr_intake": {"listen": "127.0.0.1:8085"}}, "cdr_intake.password: needed"),
        ({"cdr_intake": {"listen": "8085", "password": "x"}}, "cdr_intake.listen: expected HOST:PORT"),
    ],
)
def test_bad_switch_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        load_settings(None, data)
    assert message in str(err.value)


# -- the inbound client ---------------------------------------------------------------------------
@pytest.fixture
def inbound():
    switch = Switch(Clock(10))
    server = InboundServer(switch, password="pw")
    server.start()
    yield server
    server.close()
    switch.close()


def test_client_authenticates_reconnects_with_backoff_and_reports_each_change(inbound):
    changes = []
    conn = SwitchConnection(
        SwitchConfig("fs1", inbound.address, "pw"), on_change=lambda c: changes.append(c.up), max_backoff_s=0.5
    )
    conn.start()
    try:
        assert conn.ready.wait(5)
        assert conn.api("status").startswith("UP ")
        assert conn.exists("00000000-0000-0000-0000-000000000000") is False
        inbound.down()  # the switch goes away ...
        with gevent.Timeout(5):
            while conn.up:
                gevent.sleep(0.02)
        gevent.sleep(1.0)  # a few refused reconnects, backed off
        inbound.up()  # ... and comes back on the same port
        assert conn.ready.wait(5)
        assert changes == [True, False, True]
        assert conn.connects == 2
    finally:
        conn.stop()


def test_client_with_a_wrong_password_stays_down_and_says_why(inbound):
    conn = SwitchConnection(SwitchConfig("fs1", inbound.address, "wrong"), max_backoff_s=0.5)
    conn.start()
    try:
        assert not conn.ready.wait(1.0)
        assert "authentication refused" in conn.last_error and "password" in conn.last_error
    finally:
        conn.stop()


# -- fsbill switches -----------------------------------------------------------------------------------
def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fsbill_switches_probes_each_link(inbound, tmp_path, capsys):
    config = tmp_path / "fsbill.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": f"sqlite:///{tmp_path}/x.db",
                "metrics_listen": "",
                "switches": [
                    {"name": "fs1", "event_socket": inbound.address, "password": "pw"},
                    {"name": "fs2", "event_socket": inbound.address, "password": "nope"},
                ],
            }
        )
    )
    code, out, err = run(capsys, "switches", "--json", "--timeout", "2", "--config", str(config))
    assert code == 5  # fs2 refused the password: a monitoring check sees it in the exit code
    failure = json.loads(err)
    assert (failure["kind"], failure["exit"]) == ("switch", 5)
    assert failure["error"].startswith("1 of 2 switches not reachable: fs2 (authentication refused")
    rows = json.loads(out)
    assert [(r["name"], r["reachable"]) for r in rows] == [("fs1", True), ("fs2", False)]
    assert rows[0]["channels"] == 0
    assert "authentication refused" in rows[1]["error"]
    code, out, _ = run(capsys, "switches", "--timeout", "2", "--config", str(config))
    assert code == 5
    assert out.splitlines()[0].split() == [
        "NAME",
        "EVENT_SOCKET",
        "REACHABLE",
        "CHANNELS",
        "NODE_LINK",
        "FOLLOWING",
        "ERROR",
    ]
    empty = tmp_path / "none.yaml"
    empty.write_text("metrics_listen: ''\n")
    code, out, _ = run(capsys, "switches", "--config", str(empty))
    assert code == 0 and "no switches configured" in out


# -- the takeover guard ---------------------------------------------------------------------------------
def _live_call(store: Store, uuid: str, node: str, instance: str, now: int) -> None:
    ledger.create_tariff(store, "retail", "EUR", now)
    acc = ledger.create_account(store, "acme", "retail", now)
    ledger.topup(store, "acme", Money.parse("10"), now, reference="seed")
    rate = Rate("49", Money.parse("1.00"), Money(0), 1, 1, 0, RoundingRule())
    auth = dbcalls.reserve(
        store,
        uuid=uuid,
        account_id=dbcalls.find_payer(store, Payer("code", "acme", "test")).id,
        rate=rate,
        policy=GrantPolicy(120, 3600),
        node=node,
        caller="1555",
        destination="4930",
        now_us=now,
        lease_until_us=now + 30_000_000,
        max_ring_s=60,
        instance=instance,
    )
    assert auth.call is not None, acc


def test_two_processes_racing_for_one_call_one_wins(db_url):
    migrate_fresh(db_url)
    store = Store(db_url)
    store.upgrade()
    other = Store(db_url)
    now = Clock().now_us()
    try:
        _live_call(store, "call-1", "node-a", "node-a:1:old", now)
        later = now + 60_000_000  # node-a's lease has run out
        seen = dbadoption.orphans(
            store,
            later,
            node="node-b",
            instance="node-b:2:x",
            started_us=now,
            following=frozenset(),
            released=frozenset(),
        )
        assert [o.uuid for o in seen] == ["call-1"]
        results = []

        def take(s, name):
            results.append(dbadoption.claim(s, seen[0], node=name, instance=f"{name}:9:y", lease_until_us=later + 1))

        gevent.joinall([gevent.spawn(take, store, "node-b"), gevent.spawn(take, other, "node-c")])
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        live = dbcalls.live_calls(store)
        assert len(live) == 1 and live[0].node in ("node-b", "node-c")
        # nobody else sees it as an orphan now: its lease is fresh
        assert (
            dbadoption.orphans(
                store,
                later,
                node="node-d",
                instance="node-d:3:z",
                started_us=now,
                following=frozenset(),
                released=frozenset(),
            )
            == []
        )
    finally:
        store.close()
        other.close()


def test_an_earlier_process_of_this_node_is_an_orphan_at_once_a_sibling_is_not(sqlite_url):
    migrate_fresh(sqlite_url)
    store = Store(sqlite_url)
    store.upgrade()
    now = Clock().now_us()
    try:
        _live_call(store, "call-1", "node-a", "node-a:1:old", now)
        started = now + 1_000_000
        found = dbadoption.orphans(
            store,
            started,
            node="node-a",
            instance="node-a:2:new",
            started_us=started,
            following=frozenset(),
            released=frozenset(),
        )
        assert [o.uuid for o in found] == ["call-1"]  # created before this process started
        assert (
            dbadoption.orphans(
                store,
                started,
                node="node-a",
                instance="node-a:2:new",
                started_us=now - 1,
                following=frozenset(),
                released=frozenset(),
            )
            == []
        )  # a process of this node started before the call: a sibling's live call, leased
    finally:
        store.close()


# -- a post covers a whole channel: each visit gets its part -------------------------------------------
def test_one_cdr_post_settles_each_visit_of_its_channel_for_its_own_part(db_url):
    from fsbill.core.call import answer
    from fsbill.core.rating import billed_seconds_us, cost
    from fsbill.db import recovery as dbrecovery

    migrate_fresh(db_url)
    store = Store(db_url)
    store.upgrade()
    s = 1_000_000
    t0 = Clock().now_us()
    policy = GrantPolicy(120, 3600)
    rate = Rate("49", Money.parse("1.00"), Money(0), 1, 1, 0, RoundingRule())
    try:
        ledger.create_tariff(store, "retail", "EUR", t0)
        ledger.create_account(store, "acme", "retail", t0)
        ledger.topup(store, "acme", Money.parse("10"), t0, reference="seed")
        acc = dbcalls.find_payer(store, Payer("code", "acme", "test"))

        def visit(at_us: int):
            auth = dbcalls.reserve(
                store,
                uuid="chan-1",
                account_id=acc.id,
                rate=rate,
                policy=policy,
                node="node-a",
                caller="1555",
                destination="4930",
                now_us=at_us,
                lease_until_us=at_us + 30 * s,
                max_ring_s=60,
                instance="node-a:1:x",
            )
            call = answer(auth.call, at_us + 1 * s, policy)
            dbcalls.mark_answered(store, call, at_us + 30 * s)
            return call

        first = visit(t0)
        dbcalls.heartbeat(store, "chan-1", first.visit, t0 + 11 * s, policy, t0 + 40 * s)  # 10 s debited
        # the node died; a reaper settled the first visit up to its last debit
        [recovered] = dbcalls.reap(store, t0 + 200 * s)
        assert recovered.result == "recovered" and recovered.charged == Money.parse("0.1667")
        second = visit(t0 + 40 * s)  # the channel came back to the socket (a top-up menu) ...
        assert second.visit == 2
        # ... and that node died too. FreeSWITCH posts the channel's CDR once: answer -> end.
        posted = dbrecovery.PostedCdr("chan-1", t0 + 1 * s, t0 + 70 * s, t0, 70, "NORMAL_CLEARING", "4930")
        assert dbrecovery.store_post(store, posted, "fs1", t0 + 100 * s)
        applied = dbrecovery.apply_stored(store, "chan-1", t0 + 100 * s, lambda a, c, d: "completed")
        assert [(a.visit, a.outcome) for a in applied] == [(1, "corrected"), (2, "settled")]
        cdrs = {c.visit: c for c in dbcalls.cdrs(store)}
        assert cdrs[1].charged == cost(rate, billed_seconds_us(rate, 39 * s))  # answer .. the 2nd visit
        assert (cdrs[1].answer_us, cdrs[1].end_us) == (t0 + 1 * s, t0 + 40 * s)
        assert cdrs[2].charged == cost(rate, billed_seconds_us(rate, 29 * s))  # its answer .. the end
        assert (cdrs[2].answer_us, cdrs[2].end_us) == (t0 + 41 * s, t0 + 70 * s)
        account = ledger.get_account(store, "acme")
        assert account.reserved == Money(0)
        assert Money.parse("10") - account.balance == cdrs[1].charged + cdrs[2].charged
        assert account.balance == ledger.ledger_sum(store, "acme")
        # posted again: nothing moves
        assert not dbrecovery.store_post(store, posted, "fs1", t0 + 101 * s)
        assert [a.outcome for a in dbrecovery.apply_stored(store, "chan-1", t0 + 101 * s, lambda a, c, d: "x")] == [
            "duplicate"
        ]
        assert ledger.get_account(store, "acme").balance == account.balance
    finally:
        store.close()
