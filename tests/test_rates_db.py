"""Rate decks in the database (SQLite and PostgreSQL): all-or-nothing import, --replace,
overlap with stored rows, loading decks and keeping them fresh."""

import io

import pytest

from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.db import ledger
from fsbill.db.rates import DeckCache, IndexedDeck, import_deck, list_rates, load_deck, lookup_rate
from fsbill.errors import DatabaseUnavailable, NotFound, RateDeckError

NOW = 1_795_375_769_000_000  # 2026-11-22T19:29:29Z, a Sunday
DECK = (
    "prefix,rate,connect_fee,initial_increment,increment,description,time_from,time_to\n"
    "49,0.0100,0,1,1,Germany,,\n"
    "4915,0.0800,0.05,30,6,Germany mobile,,\n"
    "4915,0.0400,0.05,30,6,Germany mobile night,22:00,06:00\n"
    "44,0.0050,,60,60,UK,,\n"
)


@pytest.fixture
def tariff(store):
    return ledger.create_tariff(store, "retail", "EUR", NOW, RoundingRule(4, RoundingMethod.UP), "Europe/Berlin")


def csv(text: str) -> io.StringIO:
    return io.StringIO(text)


def stored(store, name="retail"):
    return [(r.prefix, str(r.rate), r.time_from_min) for r in list_rates(store, name)]


def test_import_stores_every_row_and_bumps_the_version(store, tariff):
    result = import_deck(store, "retail", csv(DECK))
    assert (result.tariff, result.imported, result.replaced) == ("retail", 4, False)
    assert result.as_json() == {"tariff": "retail", "imported": 4, "replaced": False}
    assert ledger.get_tariff(store, "retail").deck_version == tariff.deck_version + 1
    assert stored(store) == [
        ("44", "0.005", None),
        ("49", "0.01", None),
        ("4915", "0.08", None),
        ("4915", "0.04", 1320),
    ]


def test_import_from_a_path(store, tariff, tmp_path):
    path = tmp_path / "deck.csv"
    path.write_text("\ufeff" + DECK, encoding="utf-8")
    assert import_deck(store, "retail", str(path)).imported == 4


def test_loaded_deck_uses_the_tariffs_rounding_and_zone(store, tariff):
    import_deck(store, "retail", csv(DECK))
    deck = load_deck(store, tariff.id)
    assert len(deck) == 4 and deck.timezone == "Europe/Berlin"
    mobile = deck.lookup("4915112345", NOW)
    assert mobile.prefix == "4915" and mobile.rate == Money.parse("0.08")
    assert mobile.rounding == RoundingRule(4, RoundingMethod.UP) and mobile.connect_fee == Money.parse("0.05")
    night = deck.lookup("4915112345", NOW + 3 * 3600 * 1_000_000)  # 22:29 UTC = 23:29 Berlin
    assert night.description == "Germany mobile night"
    assert deck.lookup("33123", NOW) is None


@pytest.mark.parametrize(
    "bad, line",
    [
        ("prefix,rate\n49,0.01\n4x,0.01\n", 3),
        ("prefix,rate\n49,-0.01\n", 2),
        ("prefix,rate,effective_from\n49,0.01,yesterday\n", 2),
        ("prefix,rate\n49,0.01\n49,0.02\n", 3),
        ("prefix,rate,colour\n49,0.01,red\n", 1),
    ],
)
def test_a_malformed_deck_changes_nothing(store, tariff, bad, line):
    import_deck(store, "retail", csv(DECK))
    version = ledger.get_tariff(store, "retail").deck_version
    before = stored(store)
    for replace in (False, True):
        with pytest.raises(RateDeckError) as info:
            import_deck(store, "retail", csv(bad), replace=replace)
        assert info.value.line == line
    assert stored(store) == before
    assert ledger.get_tariff(store, "retail").deck_version == version


def test_replace_swaps_the_whole_deck(store, tariff):
    import_deck(store, "retail", csv(DECK))
    result = import_deck(store, "retail", csv("prefix,rate\n33,0.02\n"), replace=True)
    assert result.replaced and result.imported == 1
    assert stored(store) == [("33", "0.02", None)]


def test_adding_rows_that_overlap_stored_ones_is_refused(store, tariff):
    import_deck(store, "retail", csv(DECK))
    with pytest.raises(RateDeckError) as info:
        import_deck(store, "retail", csv("prefix,rate\n33,0.02\n49,0.02\n"))
    assert info.value.line == 3 and "already in the tariff" in info.value.reason
    assert len(stored(store)) == 4
    # a new prefix, and a band over a stored default, are fine
    assert (
        import_deck(store, "retail", csv("prefix,rate,time_from,time_to\n33,0.02,,\n49,0.005,20:00,08:00\n")).imported
        == 2
    )
    assert len(stored(store)) == 6


def test_a_later_validity_window_can_be_added(store, tariff):
    import_deck(store, "retail", csv("prefix,rate,effective_until\n49,0.02,2027-01-01\n"))
    import_deck(store, "retail", csv("prefix,rate,effective_from\n49,0.01,2027-01-01\n"))
    deck = load_deck(store, tariff.id)
    assert deck.lookup("4930", NOW).rate == Money.parse("0.02")
    assert deck.lookup("4930", NOW + 60 * 86400 * 1_000_000).rate == Money.parse("0.01")


def test_unknown_tariff(store):
    with pytest.raises(NotFound):
        import_deck(store, "nope", csv(DECK))


def test_import_in_batches_keeps_every_row(store, tariff):
    rows = "".join(f"{100000 + i},0.{i % 10000:04d}\n" for i in range(2345))
    assert import_deck(store, "retail", csv("prefix,rate\n" + rows)).imported == 2345
    deck = load_deck(store, tariff.id)
    assert len(deck) == 2345
    assert deck.lookup("1012345", NOW).rate == Money.parse("0.1234")


def test_lookup_rate_and_list_filters(store, tariff):
    import_deck(store, "retail", csv(DECK))
    assert lookup_rate(store, "retail", "4915123", NOW).prefix == "4915"
    assert lookup_rate(store, "retail", "4930123", NOW).prefix == "49"
    assert lookup_rate(store, "retail", "1555", NOW) is None
    assert [r.prefix for r in list_rates(store, "retail", prefix_filter="49")] == ["49", "4915", "4915"]
    assert [r.prefix for r in list_rates(store, "retail", limit=2)] == ["44", "49"]


def test_deck_cache_reloads_after_a_reimport(store, tariff):
    import_deck(store, "retail", csv(DECK))
    cache = DeckCache(store, refresh_s=10)
    first = cache.get(tariff.id, NOW)
    assert first.lookup("4930", NOW).rate == Money.parse("0.01")
    assert cache.get(tariff.id, NOW + 1) is first  # version unchanged: same deck
    import_deck(store, "retail", csv("prefix,rate\n49,0.02\n"), replace=True)
    # the very next call after the import committed sees the new deck, whatever refresh_s says
    fresh = cache.get(tariff.id, NOW + 2)
    assert fresh is not first and fresh.lookup("4930", NOW).rate == Money.parse("0.02")
    assert cache.get(tariff.id, NOW + 30_000_000) is fresh


def test_deck_cache_invalidate(store, tariff):
    import_deck(store, "retail", csv(DECK))
    cache = DeckCache(store, refresh_s=3600)
    first = cache.get(tariff.id, NOW)
    cache.invalidate()
    assert cache.get(tariff.id, NOW) is not first


class _Down:
    """A store whose database is unreachable (what Store raises when the driver fails)."""

    def __init__(self, store):
        self.models = store.models
        self.kind = store.kind

    def reading(self):
        raise DatabaseUnavailable("database error: connection refused")

    transaction = reading


def test_deck_cache_serves_the_cached_deck_while_the_database_is_down(store, tariff):
    import_deck(store, "retail", csv(DECK))
    cache = DeckCache(store, refresh_s=1)
    deck = cache.get(tariff.id, NOW)
    cache.store = _Down(store)
    assert cache.get(tariff.id, NOW + 5_000_000) is deck
    with pytest.raises(DatabaseUnavailable):
        cache.get(tariff.id + 1, NOW)  # nothing cached for that tariff


def test_deck_cache_rates_from_the_prefix_index_while_the_new_deck_loads(store, tariff):
    import_deck(store, "retail", csv(DECK))
    ledger.create_account(store, "acme", "retail", NOW)
    cache = DeckCache(store, refresh_s=10, background=True)
    assert cache.preload(NOW) == 4  # decks of tariffs in use
    first = cache.get(tariff.id, NOW)
    assert first.lookup("4930", NOW).rate == Money.parse("0.01")
    import_deck(store, "retail", csv("prefix,rate\n49,0.02\n"), replace=True)
    meanwhile = cache.get(tariff.id, NOW + 1)  # the reload runs on its own greenlet ...
    assert isinstance(meanwhile, IndexedDeck)  # ... and nobody waits for it
    assert meanwhile.lookup("4930", NOW).rate == Money.parse("0.02")  # never the old price
    assert meanwhile.lookup("4915123", NOW).rate == Money.parse("0.02")  # the old 4915 row is gone
    cache.wait_reloads(timeout=30)
    fresh = cache.get(tariff.id, NOW + 2)
    assert fresh is not first and not isinstance(fresh, IndexedDeck)
    assert fresh.lookup("4930", NOW).rate == Money.parse("0.02") and len(fresh) == 1
