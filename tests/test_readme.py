"""The README, as an operator reads it: its first-call section, pasted into a shell as a newcomer
would, must run as written (from a directory holding the clone's `examples/` and `.venv`) and say
what the README says it says; every other code block of it is checked against what it shows (the
test command is `.ci/run`'s, the dialplan is the shipped file's); it stays under 20 KB with a
table of contents; its links, and those of the guides it links to, resolve. Recipes that moved
out of it (the SQL import of docs/CDRS.md) are run from where they are now."""

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from fsbill.core.money import Money

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CDRS = (ROOT / "docs" / "CDRS.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of a `## heading` section (up to the next `## `)."""
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, text: str = README) -> list[str]:
    """The indented (4-space) code blocks of a section, in order (not the fenced ones)."""
    body = re.sub(r"(?ms)^```.*?^```", "", _section(text, section))
    blocks, current = [], []
    for line in body.splitlines():
        if line.startswith("    "):
            current.append(line[4:])
        elif current and line.strip():
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def _fenced(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return re.findall(r"(?ms)^```(\w*)\n(.*?)^```", text)


def test_the_first_call_runs_as_pasted(tmp_path):
    first, demo = _blocks("A first call in five minutes")[:2]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if k not in ("FSBILL_CONFIG", "VIRTUAL_ENV")}
    p = subprocess.run(["bash", "-e", "-c", first], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "placed 5: completed 5" in p.stdout
    assert re.search(r"balance\s+8\.3335 EUR", p.stdout), p.stdout
    assert "uuid,bleg_uuid,accountcode" in p.stdout
    assert (tmp_path / "first-call.db").exists() and not (tmp_path / "fsbill.db").exists()
    # the time-scale demo has its own database and ports
    first_cfg = yaml.safe_load((ROOT / "examples" / "first-call.yaml").read_text())
    demo_cfg = yaml.safe_load((ROOT / "examples" / "demo-fast.yaml").read_text())
    assert "examples/demo-fast.yaml" in demo and demo_cfg["time_scale"] == 30
    for key in ("database", "listen", "metrics_listen"):
        assert demo_cfg[key] != first_cfg[key]


def test_the_time_scale_demo_runs_as_pasted(tmp_path):
    """The demo-fast block, in the shell the first block left (venv active, $FSBILL_CONFIG set by
    the block itself). `fsbill simulate` takes `time_scale` from $FSBILL_CONFIG like every other
    setting. What holds however loaded the machine: both calls are cut off by the switch's
    schedule, and the account ends in [0, 0.0167] (0.0167 on an idle machine: the margin's
    unused second)."""
    demo = _blocks("A first call in five minutes")[1]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if k not in ("FSBILL_CONFIG", "VIRTUAL_ENV")}
    script = ". .venv/bin/activate\n" + demo.replace("fsbill account show acme", "fsbill account show acme --json")
    p = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "placed 2: completed 0, cut off 2, rejected 0" in p.stdout, p.stdout + p.stderr
    assert p.stdout.count(" cut_off ") == 2 and "ALLOTTED_TIMEOUT" in p.stdout, p.stdout
    shown = json.loads(p.stdout[p.stdout.index("{") :])
    assert Money.parse("0") <= Money.parse(shown["balance"]) <= Money.parse("0.0167"), shown
    assert shown["reserved"] in ("0", "0.00", "0.0000", "0.000000") or not Money.parse(shown["reserved"])
    assert (tmp_path / "demo-fast.db").exists() and not (tmp_path / "fsbill.db").exists()


def _sql_recipe() -> str:
    return _section(CDRS, "Into PostgreSQL").split("```sql\n", 1)[1].split("```", 1)[0]


def test_the_sql_import_recipe_loads_an_export_into_postgresql(tmp_path, pg_url, capsys, monkeypatch):
    """docs/CDRS.md's CREATE TABLE + psql \\copy, as pasted, on an export holding every kind of
    row (a call carried by a vendor, a refused one): it failed with `extra data after last
    expected column` once the vendor columns were added to the export."""
    from rig import Rig
    from test_lcr import SELL, add_vendors

    from fsbill.cdr_format import FIELDS
    from fsbill.cli.main import main

    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path}/cdrs.db"
    rig = Rig(url, time_scale=25, routing="lcr", deck=SELL)
    try:
        add_vendors(rig.store, now_us=rig.clock.now_us())
        rig.account("acme", "10.00")
        rig.call(talk_s=20)
        rig.call(account="ghost", talk_s=5)
        rig.settled(2)
    finally:
        rig.close()
    config = tmp_path / "export.yaml"
    config.write_text(f"database: '{url}'\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["cdr", "export", "--format", "csv", "--config", str(config)]) == 0
    (tmp_path / "cdrs.csv").write_text(capsys.readouterr().out, encoding="utf-8")
    recipe = tmp_path / "recipe.sql"
    recipe.write_text(_sql_recipe(), encoding="utf-8")
    psql = ["psql", pg_url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    p = subprocess.run([*psql, "-f", str(recipe)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    query = (
        "SELECT count(*), count(vendor), sum(charged), string_agg(DISTINCT result, ',' ORDER BY result) FROM fsbill_cdr"
    )
    p = subprocess.run([*psql, "-At", "-c", query], capture_output=True, text=True, timeout=60)
    count, vendors, charged, results = p.stdout.strip().split("|")
    assert (count, vendors, results) == ("2", "1", "completed,rejected") and Money.parse(charged) > Money(0)
    # the table has every exported column, in the export's order
    columns = (
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'fsbill_cdr' ORDER BY ordinal_position"
    )
    p = subprocess.run([*psql, "-At", "-c", columns], capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == list(FIELDS)


def test_the_cgrates_mapping_names_the_exported_columns():
    """docs/CDRS.md maps CGRateS fields by column position (`~*req.N`) and says which column each
    is: both must match the export's field order."""
    from fsbill.cdr_format import FIELDS

    mapping = _section(CDRS, "Into CGRateS")
    named = re.findall(r"(\d+)\s+`(\w+)`", mapping.split("```", 2)[2])
    assert len(named) == 8 and all(FIELDS[int(i)] == name for i, name in named), named
    used = {int(i) for i in re.findall(r"~\*req\.(\d+)", mapping)}
    assert used == {int(i) for i, _ in named}


# -- the README as a document ------------------------------------------------------------------------
README_MAX_BYTES = 20 * 1024


def test_the_readme_is_under_20_kb():
    size = len(README.encode("utf-8"))
    assert size < README_MAX_BYTES, f"README.md is {size} bytes: move detail into docs/ (limit {README_MAX_BYTES})"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _headings(text: str, levels: str = "#{1,6}") -> list[str]:
    body = re.sub(r"(?ms)^```.*?^```", "", text)  # a `# comment` in a code block is no heading
    return re.findall(rf"(?m)^{levels} (.+)$", body)


def test_every_section_of_the_readme_is_in_its_table_of_contents():
    toc = _section(README, "Contents")
    listed = re.findall(r"(?m)^- \[(.+?)\]\(#([\w-]+)\)$", toc)
    sections = [h for h in _headings(README, "##") if h != "Contents"]
    assert [title for title, _ in listed] == sections, "the table of contents lists every ## section, in order"
    assert all(anchor == _slug(title) for title, anchor in listed), listed


def _link_targets(path: Path) -> list[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text(encoding="utf-8"))
    text = re.sub(r"(?s)<!--.*?-->", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _documents() -> list[Path]:
    """The README and every document it links to, and theirs (docs/, deploy/)."""
    seen: list[Path] = []
    todo = [ROOT / "README.md"]
    while todo:
        doc = todo.pop()
        if doc in seen:
            continue
        seen.append(doc)
        for target in _link_targets(doc):
            file = target.split("#", 1)[0]
            if file.endswith(".md") and "://" not in file:
                linked = (doc.parent / file).resolve()
                if linked.is_file() and ROOT in linked.parents:
                    todo.append(linked)
    return seen


def test_the_readme_links_every_guide_in_docs():
    linked = {p.relative_to(ROOT).as_posix() for p in _documents()}
    guides = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    assert guides <= linked, f"not reachable from the README: {sorted(guides - linked)}"
    for name in ("ACCOUNTS", "FRAUD", "FREESWITCH", "RATE-DECKS", "BENCHMARKS", "ARCHITECTURE"):
        assert f"](docs/{name}.md)" in _section(README, "Feature guides"), name


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(doc):
    """Each link of the README and of the documents it reaches names a file of the clone, and an
    anchor in a Markdown file names one of its headings."""
    broken = []
    for target in _link_targets(doc):
        if "://" in target or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md":
            if anchor not in {_slug(h) for h in _headings(dest.read_text(encoding="utf-8"))}:
                broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, broken


# -- every code block of the README is run or checked --------------------------------------------------------
def _ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    return lines[-1]


def test_the_two_commands_are_the_ones_ci_runs():
    install, checks = _blocks("Two commands on a fresh machine")
    assert checks == _ci_command(), "the README's test command is .ci/run's, exactly"
    # the install line is the same install without the test extra, then the enforcer
    assert install == "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/fsbill serve"
    assert checks.startswith("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && ")


def _extension(xml_text: str) -> list[tuple[str, dict]]:
    root = ET.fromstring(xml_text)
    ext = root if root.tag == "extension" else root.find("extension")
    assert ext is not None
    return [(e.tag, e.attrib) for e in ext.iter()]


def test_the_readmes_dialplan_is_the_shipped_one():
    (body,) = [b for lang, b in _fenced(_section(README, "The FreeSWITCH side")) if lang == "xml"]
    shipped = (ROOT / "dialplan" / "fsbill_prepaid.xml").read_text(encoding="utf-8")
    assert _extension(body) == _extension(shipped)


def test_every_code_block_of_the_readme_is_run_or_checked():
    """A block added to the README needs a test that runs it (or checks it) here."""
    first, demo = _blocks("A first call in five minutes")[:2]
    covered = {
        *_blocks("Two commands on a fresh machine"),  # test_the_two_commands_are_the_ones_ci_runs
        first,  # test_the_first_call_runs_as_pasted
        demo,  # test_the_time_scale_demo_runs_as_pasted
    }
    sections = [h for h in _headings(README, "##") if h != "Contents"]
    indented = [b for s in sections for b in _blocks(s)]
    assert set(indented) == covered, [b for b in indented if b not in covered]
    fenced = _fenced(README)
    assert [lang for lang, _ in fenced] == ["xml"]  # test_the_readmes_dialplan_is_the_shipped_one
