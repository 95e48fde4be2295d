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
