"""Decks as carriers send them, in the pure core: column mappings, encodings, prefixes written
like dialled numbers, and the dry run's comparison. Table-driven; every refusal names its line."""

import io

import pytest

from fsbill.core.deckdiff import diff_decks
from fsbill.core.ratedeck import check_encoding, decode_lines, parse_mapping, parse_rows
from fsbill.errors import InvalidInput, RateDeckError


def rows(text: str, **options):
    return parse_rows(io.StringIO(text), "UTC", **options)


# -- column mapping ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        # the carrier's own names, any case, extra columns skipped when told
        (
            "Code,Destination,Rate/min,Region\n49,Germany,0.01,EU\n",
            {"columns": {"prefix": "code", "rate": "RATE/MIN", "description": "Destination"}, "ignore_extra": True},
            [("49", 10_000, "Germany")],
        ),
        # a field left out of the mapping is found under fsbill's name
        ("Code,rate\n33,0.02\n", {"columns": {"prefix": "Code"}}, [("33", 20_000, "")]),
        # separators are sniffed with the mapped names
        (
            "Code;Price\n44;0,5\n",
            {"columns": {"prefix": "Code", "rate": "Price"}, "decimal_comma": True},
            [("44", 500_000, "")],
        ),
        # --ignore-extra without a mapping: today's format plus columns of no interest
        ("prefix,rate,notes\n1,1,x\n", {"ignore_extra": True}, [("1", 1_000_000, "")]),
        # a column named like a field that was mapped elsewhere is an extra one
        ("prefix,Cost,rate\n1,2,3\n", {"columns": {"rate": "Cost"}, "ignore_extra": True}, [("1", 2_000_000, "")]),
    ],
)
def test_mapped_columns(text, options, expected):
    deck = rows(text, **options)
    assert [(r[0], r[1], r[6]) for r in deck] == expected


@pytest.mark.parametrize(
    ("text", "options", "line", "reason"),
    [
        ("Code,Rate,Region\n49,1,EU\n", {"columns": {"prefix": "Code"}}, 1, "unknown column 'Region'"),
        ("Code,Rate,A,B\n49,1,x,y\n", {"columns": {"prefix": "Code"}}, 1, "unknown columns 'A', 'B'"),
        ("Code,Rate\n49,1\n", {"columns": {"prefix": "Dial code"}}, 1, "'Dial code' (for prefix) is not in the header"),
        ("Code,Code,Rate\n1,2,3\n", {"columns": {"prefix": "Code"}}, 1, "column 'Code' appears twice"),
        ("Code,Rate,Region\n49,1,EU\n49x,1,EU\n", {"columns": {"prefix": "Code"}, "ignore_extra": True}, 3, "49x"),
        ("Code,Rate,Region\n49,1\n", {"columns": {"prefix": "Code"}, "ignore_extra": True}, 2, "expected 3 fields"),
    ],
)
def test_mapping_refusals_name_the_line(text, options, line, reason):
    with pytest.raises(RateDeckError) as info:
        rows(text, **options)
    assert info.value.line == line and reason in str(info.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["prefix=Code,rate=Price"], {"prefix": "Code", "rate": "Price"}),
        (["prefix=Code", "rate=Rate / min"], {"prefix": "Code", "rate": "Rate / min"}),
        (["increment_s=Incr"], {"increment": "Incr"}),
    ],
)
def test_parse_mapping(values, expected):
    assert parse_mapping(values) == expected


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (["prefix"], "expected FIELD=HEADER"),
        (["colour=Colour"], "unknown field 'colour'"),
        (["prefix=A,prefix=B"], "mapped twice"),
        (["prefix=Code,rate=code"], "header 'code' is mapped to two fields"),
    ],
)
def test_parse_mapping_refusals(values, reason):
    with pytest.raises(InvalidInput, match=reason):
        parse_mapping(values)


# -- encodings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "encoding", "descriptions"),
    [
        ("prefix,rate,description\n33,1,Française\n".encode("cp1252"), "cp1252", ["Française"]),
        ("prefix,rate,description\n33,1,Français €\n".encode("cp1252"), "cp1252", ["Français €"]),
        ("prefix,rate,description\n49,1,Österreich\n".encode("latin-1"), "latin-1", ["Österreich"]),
        ("\ufeffprefix,rate,description\r\n49,1,Düsseldorf\r\n".encode(), "utf-8", ["Düsseldorf"]),
        (b"prefix,rate,description\r33,1,a\r44,1,b\r", "utf-8", ["a", "b"]),  # old Mac line ends
    ],
)
def test_decoded_decks(data, encoding, descriptions):
    deck = parse_rows(decode_lines(io.BytesIO(data), encoding), "UTC")
    assert [r[6] for r in deck] == descriptions


@pytest.mark.parametrize(
    ("data", "line", "reason"),
    [
        ("prefix,rate,description\n49,1,ok\n33,1,Française\n".encode("cp1252"), 3, "byte 0xe7 at byte 10 of the line"),
        (b"\n\nprefix,rate\r\n49,1\r\n\xff4,1\r\n", 5, "byte 0xff at byte 1"),
        # an earlier malformed line is still the one reported
        (b"prefix,rate\n4x,1\n33,1,\xe7\n", 2, "4x"),
    ],
)
def test_undecodable_line_is_named(data, line, reason):
    with pytest.raises(RateDeckError) as info:
        parse_rows(decode_lines(io.BytesIO(data), "utf-8"), "UTC")
    assert info.value.line == line and reason in str(info.value)


def test_undecodable_line_found_across_chunks(monkeypatch):
    import fsbill.core.deckfile as deckfile

    monkeypatch.setattr(deckfile, "CHUNK_BYTES", 7)
    data = b"prefix,rate\n" + b"".join(b"%d,1\n" % n for n in range(1, 60)) + b"99,1\xe9\n"
    with pytest.raises(RateDeckError) as info:
        list(decode_lines(io.BytesIO(data), "utf-8"))
    assert info.value.line == 61
    assert len(list(decode_lines(io.BytesIO(data), "cp1252"))) == 61


@pytest.mark.parametrize(("name", "reason"), [("klingon", "unknown encoding"), ("utf-16", "not ASCII-compatible")])
def test_encoding_names(name, reason):
    with pytest.raises(InvalidInput, match=reason):
        check_encoding(name)
    assert check_encoding("LATIN-1") == "iso8859-1" and check_encoding("windows-1252") == "cp1252"


# -- prefixes written like dialled numbers --------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "international_prefix", "stored", "written"),
    [
        ("49", "00", "49", "49"),
        ("+49", "00", "49", "+49"),
        ("0049", "00", "49", "0049"),
        (" +4915 ", "00", "4915", "+4915"),
        ("01149", "011", "49", "01149"),
        ("0049", "011", "0049", "0049"),  # not this operator's international prefix: a number like any
        ("+0049", "00", "0049", "+0049"),  # one '+' or the prefix, never both (as numbers)
        ("0049", "", "0049", "0049"),
    ],
)
def test_prefix_normalised_like_numbers(cell, international_prefix, stored, written):
    deck = rows(f"prefix,rate\n{cell},1\n", international_prefix=international_prefix)
    assert deck.prefixes == [stored] and deck.written_prefix(0) == written
    assert deck.normalised() == (stored != cell.strip())


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("prefix,rate\n49,1\n+49,2\n", 3, "prefix '+49' (normalised to 49) duplicates line 2 ('49', normalised to 49)"),
        ("prefix,rate\n0049,1\n33,1\n+49,2\n", 4, "prefix '+49' (normalised to 49) duplicates line 2 ('0049'"),
        ("prefix,rate\n+49,1\n+49,2\n", 3, "prefix 49 duplicates line 2"),
        ("prefix,rate\n+,1\n", 2, "prefix '+' must be 1-32 digits, optionally after one '+' or the international"),
        ("prefix,rate\n00,1\n", 2, "prefix '00' must be"),
        ("prefix,rate\n+49 151,1\n", 2, "no spaces"),
    ],
)
def test_prefix_refusals(text, line, reason):
    with pytest.raises(RateDeckError) as info:
        rows(text)
    assert info.value.line == line and reason in str(info.value)


def test_normalised_prefixes_in_different_bands_do_not_collide():
    deck = rows("prefix,rate,weekdays\n49,1,\n+49,2,67\n")
    assert deck.prefixes == ["49", "49"]


# -- the dry run's comparison ---------------------------------------------------------------------
def _deck(text):
    return list(rows(text).in_prefix_order())


BEFORE = "prefix,rate,description\n33,0.02,France\n44,0.03,UK\n49,0.01,Germany\n4915,0.06,DE mobile\n"


@pytest.mark.parametrize(
    ("after", "replace", "counts", "listed"),
    [
        (
            "prefix,rate,description\n33,0.02,France\n44,0.04,UK\n49,0.005,Germany\n4930,0.01,Berlin\n",
            True,
            {"added": 1, "removed": 1, "dearer": 1, "cheaper": 1, "changed": 0, "unchanged": 1},
            {"added": ["4930"], "removed": ["4915"], "dearer": ["44"], "cheaper": ["49"]},
        ),
        (
            "prefix,rate,connect_fee,description\n33,0.02,0.10,France\n44,0.03,,Royaume-Uni\n",
            True,
            {"added": 0, "removed": 2, "dearer": 0, "cheaper": 0, "changed": 2, "unchanged": 0},
            {"removed": ["49", "4915"], "changed": ["33", "44"]},
        ),
        # without --replace nothing is removed; a prefix gaining a dearer night band is dearer
        (
            "prefix,rate,time_from,time_to\n1,0.5,,\n49,0.02,22:00,06:00\n",
            False,
            {"added": 1, "removed": 0, "dearer": 1, "cheaper": 0, "changed": 0, "unchanged": 3},
            {"added": ["1"], "dearer": ["49"]},
        ),
    ],
)
def test_diff(after, replace, counts, listed):
    diff = diff_decks(_deck(BEFORE), _deck(after), replace)
    assert diff.counts == counts
    assert {k: [c.prefix for c in v] for k, v in diff.listed.items() if v} == listed
    assert diff.rates_before == 4


def test_diff_listing_is_bounded_and_counts_complete():
    before = _deck("prefix,rate\n" + "".join(f"{n},1\n" for n in range(100, 200)))
    after = _deck("prefix,rate\n" + "".join(f"{n},2\n" for n in range(150, 300)))
    diff = diff_decks(before, after, True, limit=3)
    assert diff.counts == {"added": 100, "removed": 50, "dearer": 50, "cheaper": 0, "changed": 0, "unchanged": 0}
    assert [c.prefix for c in diff.listed["added"]] == ["200", "201", "202"]
    assert [(c.prefix, str(c.before), str(c.after)) for c in diff.listed["dearer"]][0] == ("150", "1.00", "2.00")
    assert (diff.rates_before, diff.rates_after) == (100, 150)
