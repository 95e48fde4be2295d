"""Rate deck CSV parsing: every malformed line is refused with its physical line number."""

import io

import pytest

from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.ratedeck import check_against, parse_deck, parse_rows
from fsbill.core.rating import Rate
from fsbill.errors import RateDeckError

RULE = RoundingRule(4, RoundingMethod.HALF_UP)
HEADER = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description,effective_from,effective_until,weekdays,time_from,time_to"


def parse(text: str, zone: str = "UTC"):
    return parse_deck(io.StringIO(text), RULE, zone)


def test_full_deck_parses_to_rates():
    deck = parse(
        HEADER + "\n"
        "49,0.0100,0,1,1,0,Germany,,,,,\n"
        "4915,0.0800,0.05,30,6,10,Germany mobile,2026-01-01,2027-01-01T00:00:00+00:00,,,\n"
        '44,0.0050,,60,60,,UK weekends,,,"6,7",,\n'
        "44,0.0080,,60,60,,UK weekday nights,,,1-5,22:00,06:00\n"
        "\n",
        zone="Europe/Berlin",
    )
    assert len(deck) == 4 and deck.lines == [2, 3, 4, 5]
    de, mobile, weekend, nights = deck
    assert de == Rate("49", Money.parse("0.01"), rounding=RULE, description="Germany")
    assert mobile.connect_fee == Money.parse("0.05") and (
        mobile.initial_increment_s,
        mobile.increment_s,
        mobile.min_duration_s,
    ) == (30, 6, 10)
    assert mobile.effective_from_us == 1767222000 * 1_000_000  # 2026-01-01 00:00 in Berlin (UTC+1)
    assert mobile.effective_until_us == 1798761600 * 1_000_000
    assert weekend.weekdays == frozenset({6, 7}) and weekend.time_from_min is None
    assert nights.weekdays == frozenset({1, 2, 3, 4, 5}) and (nights.time_from_min, nights.time_to_min) == (1320, 360)


def test_minimal_columns_any_order_and_case():
    deck = parse("Rate,PREFIX\n0.5,1\n")
    assert deck == [Rate("1", Money.parse("0.5"), rounding=RULE)]


def test_weekday_syntaxes():
    deck = parse('prefix,rate,weekdays\n1,1,12345\n2,1,"1-3,5"\n3,1,7\n4,1,1-7\n')
    assert [r.weekdays for r in deck] == [frozenset({1, 2, 3, 4, 5}), frozenset({1, 2, 3, 5}), frozenset({7}), None]


def test_time_to_may_be_midnight_as_24_00():
    (r,) = parse("prefix,rate,time_from,time_to\n1,1,18:00,24:00\n")
    assert (r.time_from_min, r.time_to_min) == (1080, 1440)


def test_byte_order_mark_and_blank_lines_are_ignored():
    deck = parse("\ufeffprefix,rate\n\n1,1\n\n\n")
    assert len(deck) == 1 and deck.lines == [3]


def test_progress_reports_rows():
    seen = []
    parse_deck(io.StringIO("prefix,rate\n" + "".join(f"{i},1\n" for i in range(1, 25_001))), RULE, "UTC", seen.append)
    assert seen[:2] == [10_000, 20_000] and seen[-1] == 25_000  # rows, not lines: the header does not count


def test_rows_are_storage_tuples():
    (row,) = parse_rows(io.StringIO('prefix,rate,weekdays\n49,0.01,"7,1"\n'), "UTC")
    assert row == ("49", 10_000, 0, 1, 1, 0, "", None, None, "17", None, None)


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("", 1, "empty deck"),
        ("prefix\n1\n", 1, "missing required column"),
        ("prefix,rate,colour\n1,1,red\n", 1, "unknown column 'colour'"),
        ("prefix,rate,rate\n1,1,1\n", 1, "appears twice"),
        ("prefix,rate\n1,1\n+4 9,1\n", 3, "prefix '+4 9' must be"),
        ("prefix,rate\n1,1\n++49,1\n", 3, "prefix '++49' must be"),
        (
            "prefix,rate\n1,1\n00,1\n",
            3,
            "prefix '00' must be 1-32 digits, optionally after one '+' or the international prefix '00'",
        ),
        ("prefix,rate\n1,1\n4915-4917,1\n", 3, "no spaces, '-' or letters"),
        ("prefix,rate\n1,1\n49a,1\n", 3, "must be 1-32 digits"),
        ("prefix,rate\n,1\n", 2, "must be 1-32 digits"),
        ("prefix,rate\n" + "1" * 33 + ",1\n", 2, "must be 1-32 digits"),
        ("prefix,rate\n1,1\n2,-0.01\n", 3, "must not be negative"),
        ("prefix,rate\n1,1e3\n", 2, "not an exact decimal"),
        ('prefix,rate\n1,"1,5"\n', 2, "not an exact decimal"),
        ("prefix,rate\n1,abc\n", 2, "not an exact decimal"),
        ("prefix,rate\n1,0.0000001\n", 2, "not an exact decimal"),
        ("prefix,rate\n1,\n", 2, "rate is empty"),
        ("prefix,rate,connect_fee\n1,1,-1\n", 2, "connect_fee '-1' must not be negative"),
        ("prefix,rate,initial_increment\n1,1,0\n", 2, "initial_increment '0'"),
        ("prefix,rate,increment\n1,1,1.5\n", 2, "increment '1.5'"),
        ("prefix,rate,increment\n1,1,-6\n", 2, "increment '-6'"),
        ("prefix,rate,min_duration\n1,1,x\n", 2, "min_duration 'x'"),
        ("prefix,rate,effective_from\n1,1,2026-13-01\n", 2, "effective_from '2026-13-01' is not an ISO 8601"),
        ("prefix,rate,effective_until\n1,1,tomorrow\n", 2, "effective_until 'tomorrow'"),
        ("prefix,rate,effective_from,effective_until\n1,1,2026-02-01,2026-01-01\n", 2, "effective_from must be before"),
        ("prefix,rate,effective_from,effective_until\n1,1,2026-01-01,2026-01-01\n", 2, "effective_from must be before"),
        ("prefix,rate,weekdays\n1,1,8\n", 2, "weekdays '8'"),
        ("prefix,rate,weekdays\n1,1,5-1\n", 2, "weekdays '5-1'"),
        ("prefix,rate,weekdays\n1,1,mon\n", 2, "weekdays 'mon'"),
        ("prefix,rate,time_from,time_to\n1,1,22:00,\n", 2, "give both or neither"),
        ("prefix,rate,time_from,time_to\n1,1,25:00,06:00\n", 2, "time_from '25:00'"),
        ("prefix,rate,time_from,time_to\n1,1,22:60,06:00\n", 2, "time_from '22:60'"),
        ("prefix,rate,time_from,time_to\n1,1,24:00,06:00\n", 2, "time_from '24:00'"),
        ("prefix,rate,time_from,time_to\n1,1,10pm,06:00\n", 2, "time_from '10pm'"),
        ("prefix,rate,time_from,time_to\n1,1,08:00,08:00\n", 2, "are equal"),
        ("prefix,rate\n1,1\n2,1,3\n", 3, "expected 2 fields"),
        ('prefix,rate,description\n1,1,"unterminated\n', 2, "unreadable CSV"),
    ],
)
def test_malformed_lines(text, line, reason):
    with pytest.raises(RateDeckError) as info:
        parse(text)
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(info.value).startswith(f"line {line}: ")


def test_line_numbers_are_physical_lines_across_blank_lines_and_quoted_newlines():
    text = 'prefix,rate,description\n1,1,"two\nlines"\n\n2,1,x\n3,x,y\n'
    with pytest.raises(RateDeckError) as info:
        parse(text)
    assert info.value.line == 6


@pytest.mark.parametrize(
    "rows, clash",
    [  # prefix,rate,effective_from,effective_until,weekdays,time_from,time_to
        (["49,1,,,,,", "49,2,,,,,"], True),  # same prefix, always valid
        (["49,1,2026-01-01,,,,", "49,2,,2026-06-01,,,"], True),  # validity windows overlap
        (["49,1,,2026-01-01,,,", "49,2,2026-01-01,,,,"], False),  # back to back (until exclusive)
        (["49,1,,,,22:00,06:00", "49,2,,,,05:00,07:00"], True),  # bands overlap after midnight
        (["49,1,,,,22:00,06:00", "49,2,,,,06:00,22:00"], False),  # day and night
        (["49,1,,,1-5,,", '49,2,,,"6,7",,'], False),  # weekdays and weekend
        (["49,1,,,1-5,,", "49,2,,,5-7,,"], True),  # both have Friday
        (["49,1,,,1-5,08:00,18:00", "49,2,,,6-7,08:00,18:00"], False),
        (["49,1,,,,22:00,06:00", "49,2,2027-01-01,,,22:00,06:00"], True),  # same band, windows overlap
        (["49,1,,,,,", "49,2,,,,22:00,06:00"], False),  # a default plus a band overriding it
        (["49,1,,,,,", "491,2,,,,,"], False),  # different prefixes
    ],
)
def test_duplicate_prefixes(rows, clash):
    header = "prefix,rate,effective_from,effective_until,weekdays,time_from,time_to"
    text = "\n".join([header, "1,1,,,,,"] + rows) + "\n"
    if clash:
        with pytest.raises(RateDeckError) as info:
            parse(text)
        assert info.value.line == 4
        assert "duplicates line 3" in info.value.reason
    else:
        assert len(parse(text)) == 3


def test_check_against_existing_rows():
    existing = [Rate("49", Money(1), effective_until_us=1_000)]
    new = parse("prefix,rate,effective_from\n1,1,\n49,1,1970-01-01T00:00:00.001\n")
    check_against(existing, new)  # starts when the old one ends
    clashing = parse("prefix,rate\n1,1\n49,1\n")
    with pytest.raises(RateDeckError) as info:
        check_against(existing, clashing)
    assert info.value.line == 3 and "--replace" in info.value.reason


# -- files as carriers send them --------------------------------------------------------------
def test_semicolon_deck_is_detected_and_decimal_commas_read_exactly():
    text = "prefix;rate;connect_fee;description\n49;0,0125;0,05;Germany, fixed\n"
    (rate,) = parse_deck(io.StringIO(text), RULE, "UTC", decimal_comma=True)
    assert (rate.prefix, str(rate.rate), str(rate.connect_fee)) == ("49", "0.0125", "0.05")
    assert rate.description == "Germany, fixed"
    tabbed = parse_deck(io.StringIO("prefix\trate\n44\t0.5\n"), RULE, "UTC")
    assert tabbed[0].prefix == "44"


def test_a_decimal_comma_without_the_option_names_it():
    with pytest.raises(RateDeckError) as info:
        parse_rows(io.StringIO("prefix;rate\n49;0,0125\n"), "UTC")
    assert info.value.line == 2 and "--decimal-comma" in str(info.value)


def test_decimal_comma_with_a_comma_separator_is_refused():
    with pytest.raises(RateDeckError) as info:
        parse_rows(io.StringIO("prefix,rate\n49,1\n"), "UTC", decimal_comma=True)
    assert "separator other than ','" in str(info.value)


def test_a_refusal_names_the_separator_it_read_with():
    with pytest.raises(RateDeckError) as info:
        parse_rows(io.StringIO("prefix;rate\n49;1\n"), "UTC", delimiter=",")
    assert "separated by ','" in str(info.value) and info.value.line == 1
    with pytest.raises(RateDeckError) as info:
        parse_rows(io.StringIO("prefix;rate\n49;1;2\n"), "UTC")
    assert "separated by ';'" in str(info.value) and info.value.line == 2


def test_unit_suffixed_column_names_are_aliases():
    (rate,) = parse("prefix,rate,initial_increment_s,increment_s,min_duration_s\n49,1,30,6,10\n")
    assert (rate.initial_increment_s, rate.increment_s, rate.min_duration_s) == (30, 6, 10)


def test_rows_come_in_prefix_order_for_the_insert_and_duplicates_name_the_earliest_line():
    rows = parse_rows(io.StringIO("prefix,rate,effective_until\n5,1,\n3,2,2026-01-01\n4,3,\n"), "UTC")
    assert [r[0] for r in rows.in_prefix_order()] == ["3", "4", "5"] and list(rows.lines) == [2, 3, 4]
    with pytest.raises(RateDeckError) as info:
        parse_rows(io.StringIO("prefix,rate\n9,1\n5,1\n7,1\n7,2\n5,2\n"), "UTC")
    assert info.value.line == 5 and "duplicates line 4" in str(info.value)


def test_validated_rows_are_held_compactly():
    """What keeps a 1,000,000-row import under 300 MB (measured: 243 MB peak RSS, docs/BENCHMARKS.md):
    rows held by column. Python heap per row while parsing a wholesale-shaped deck, traced."""
    import random
    import tracemalloc

    rng = random.Random(3)
    lines = ["prefix,rate,connect_fee,initial_increment,increment,min_duration,description\n"]
    lines += [
        f"{p},{rng.randrange(1, 20000) / 10000:.4f},0,{rng.choice((1, 30, 60))},{rng.choice((1, 6, 60))},0,Country {p % 250}\n"
        for p in rng.sample(range(10**6, 10**8), 50_000)
    ]
    tracemalloc.start()
    try:
        rows = parse_rows(lines, "UTC")
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rows) == 50_000
    assert kept / len(rows) < 130 and peak / len(rows) < 250, (kept / len(rows), peak / len(rows))  # tuples: 252 / 346
