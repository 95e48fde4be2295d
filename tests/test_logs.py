"""Logs an operator ships to a collector: one event per line in both formats (tracebacks
included), the startup banner in the configured format, and a demo's scaled clock kept out of
real books."""

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rig import Rig

from fsbill.logs import configure, event

SCRIPT = Path(sys.executable).with_name("fsbill")


@pytest.fixture
def restore_logging():
    from fsbill import logs

    loggers = [logging.getLogger("fsbill"), logging.getLogger()]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    fmt = dict(logs._FORMAT)
    yield
    import gevent

    gevent.get_hub().__dict__.pop("print_exception", None)
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    logs._FORMAT.update(fmt)


@pytest.mark.parametrize("fmt", ["keyvalue", "json"])
def test_a_traceback_stays_one_event(fmt, restore_logging):
    out = io.StringIO()
    configure("info", fmt, out)
    log = logging.getLogger("fsbill.test")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("settlement failed")
    event(log, "deck_reloaded", tariff_id=1, rates=3)
    logging.getLogger("greenswitch").warning("library warning")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    if fmt == "json":
        first = json.loads(lines[0])
        assert first["message"] == "settlement failed" and "RuntimeError: boom" in first["exception"]
        assert json.loads(lines[1])["event"] == "deck_reloaded"
        assert json.loads(lines[2])["logger"] == "greenswitch"
    else:
        assert 'msg="settlement failed"' in lines[0] and "exception=" in lines[0] and "RuntimeError" in lines[0]
        assert "event=deck_reloaded tariff_id=1 rates=3" in lines[1]
        assert "logger=greenswitch" in lines[2]


@pytest.mark.parametrize("fmt", ["keyvalue", "json"])
def test_a_greenlet_dying_is_one_event(fmt, restore_logging):
    import gevent

    out = io.StringIO()
    configure("info", fmt, out)

    def boom():
        raise ValueError("first\nsecond")

    gevent.spawn(boom).join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "greenlet_failed" in lines[0] and "ValueError" in lines[0]


def _serve(config: Path, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}
    return subprocess.Popen(
        [str(SCRIPT), "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    )


def _banner(proc: subprocess.Popen, want: str) -> str:
    try:
        for line in proc.stderr:
            if want in line:
                return line
        return ""
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_startup_banner_obeys_log_format_json(tmp_path):
    config = tmp_path / "fsbill.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path}/fsbill.db\nlisten: 127.0.0.1:0\nmetrics_listen: ''\nlog_format: json\n",
        encoding="utf-8",
    )
    line = _banner(_serve(config, tmp_path), '"serving"')
    banner = json.loads(line)
    assert banner["event"] == "serving" and banner["listen"].startswith("127.0.0.1:")
    assert banner["metrics"] == "off" and banner["level"] == "info"


def test_a_scaled_clock_is_refused_on_a_database_with_real_calls(tmp_path):
    url = f"sqlite:///{tmp_path}/fsbill.db"
    real = Rig(url, time_scale=1.0)
    try:
        real.call(account="nobody", talk_s=1)  # an unknown caller: a real-time rejection CDR
        real.settled(1)
    finally:
        real.close()
    demo = tmp_path / "demo.yaml"
    demo.write_text(f"database: {url}\ntime_scale: 30\nlisten: 127.0.0.1:0\nmetrics_listen: ''\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}
    p = subprocess.run(
        [str(SCRIPT), "serve", "--config", str(demo)], capture_output=True, text=True, env=env, timeout=60
    )
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    assert "time_scale: 30" in p.stderr and "own `database`" in p.stderr and "(1 CDRs)" in p.stderr
    # on its own database the demo runs
    demo.write_text(
        f"database: sqlite:///{tmp_path}/demo.db\ntime_scale: 30\nlisten: 127.0.0.1:0\nmetrics_listen: ''\n",
        encoding="utf-8",
    )
    assert "fsbill serving" in _banner(_serve(demo, tmp_path), "fsbill serving")
