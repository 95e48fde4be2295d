"""Issue 12 item 10: once `rates import --replace` has committed, no call that starts afterwards
is rated from the old deck, on any node, however soon after; and no call waits for the reload.
Through the emulator over TCP into a real node, on SQLite and PostgreSQL."""

import io

import pytest
from rig import Rig

from fsbill.core.money import Money
from fsbill.db.rates import import_deck


@pytest.fixture
def rig(db_url):
    r = Rig(db_url, time_scale=25, rates_refresh_s=3600)  # refresh_s no longer delays a new deck
    yield r
    r.close()


def test_the_first_call_after_a_replace_is_rated_from_the_new_deck(rig):
    rig.account("acme", "10.00")
    before = rig.call(talk_s=3)
    [old] = rig.settled(1)
    assert old.uuid == before.uuid and old.rate == Money.parse("1.00")
    for price in ("2.00", "3.00", "0.50"):
        import_deck(rig.store, "retail", io.StringIO(f"prefix,rate\n49,{price}\n"), replace=True)
        after = rig.call(talk_s=3)  # at once: no refresh interval, no reload waited for
        cdr = next(c for c in rig.cdrs() if c.uuid == after.uuid)
        assert cdr.rate == Money.parse(price), price
        assert cdr.prefix == "49"
    # the in-memory deck catches up in the background, and calls keep its price
    rig.node.decks.wait_reloads(timeout=30)
    last = rig.call(talk_s=2)
    assert next(c for c in rig.cdrs() if c.uuid == last.uuid).rate == Money.parse("0.50")
