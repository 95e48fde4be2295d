"""The README's first-call section, pasted into a shell as a newcomer would: it must run as
written (from a directory holding the clone's `examples/` and `.venv`) and say what the README
says it says."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fsbill.core.money import Money

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(section: str) -> list[str]:
    """The indented (4-space) code blocks of a README section, in order."""
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
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
    body = README.split("## CDRs\n", 1)[1].split("\n## ", 1)[0]
    return body.split("```sql\n", 1)[1].split("```", 1)[0]


def test_the_sql_import_recipe_loads_an_export_into_postgresql(tmp_path, pg_url, capsys, monkeypatch):
    """The README's CREATE TABLE + psql \\copy, as pasted, on an export holding every kind of
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
