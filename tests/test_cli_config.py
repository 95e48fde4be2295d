"""`fsbill config check`, config files that are not files, `fsbill simulate`'s default server,
and the packaging an operator meets first (LICENSE, the version, PostgreSQL as an extra)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

import fsbill

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("fsbill")


def run(*argv: str, cwd: Path | None = None, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}
    env.update(env_extra or {})
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, env=env, timeout=60, cwd=cwd)


def test_config_check_prints_every_effective_setting(tmp_path):
    config = tmp_path / "fsbill.yaml"
    config.write_text("heartbeat_s: 5\ncutoff: {mode: transfer}\n", encoding="utf-8")
    p = run("config", "check", "--config", str(config))
    assert p.returncode == 0, p.stderr
    first, _, body = p.stdout.partition("\n")
    assert first == f"# {config}: valid"
    shown = yaml.safe_load(body)
    assert shown["heartbeat_s"] == 5 and shown["cutoff"]["mode"] == "transfer"
    assert shown["slice_s"] == 120 and shown["rejections"]["insufficient_funds"]["code"] == 402
    assert shown["nibblebill_compat"] is False
    data = json.loads(run("config", "check", "--config", str(config), "--json").stdout)
    assert data["valid"] is True and data["settings"]["cutoff"]["margin_s"] == 1


def test_config_check_refuses_a_bad_key_in_one_line(tmp_path):
    config = tmp_path / "fsbill.yaml"
    config.write_text("cutoff: {margin_s: 0}\n", encoding="utf-8")
    p = run("config", "check", "--config", str(config))
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.splitlines()) == 1
    assert "cutoff.margin_s" in p.stderr


def test_config_on_a_directory_is_a_clean_error(tmp_path):
    p = run("config", "check", "--config", str(tmp_path))
    assert p.returncode == 2 and "is a directory" in p.stderr and "Traceback" not in p.stderr
    p = run("account", "list", "--config", str(tmp_path), "--json")
    assert p.returncode == 2 and "is a directory" in json.loads(p.stderr)["error"]


def test_the_systemd_unit_checks_with_config_check():
    unit = (ROOT / "deploy" / "fsbill.service").read_text(encoding="utf-8")
    [pre] = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert pre == "ExecStartPre=/opt/fsbill/venv/bin/fsbill config check --config /etc/fsbill/fsbill.yaml"


def test_shipped_example_config_passes_config_check():
    p = run("config", "check", "--config", str(ROOT / "deploy" / "fsbill.yaml"))
    assert p.returncode == 0, p.stderr


def test_simulate_without_server_dials_the_configured_listen_and_says_so(tmp_path):
    config = tmp_path / "fsbill.yaml"
    config.write_text("listen: 127.0.0.1:1\n", encoding="utf-8")  # nobody listens on port 1
    p = run("simulate", "--config", str(config), "--calls", "1", "--talk", "1")
    assert "dialling fsbill at 127.0.0.1:1" in p.stderr
    assert p.returncode == 1 and "Connection refused" in p.stdout


def test_postgresql_without_its_driver_names_the_extra(tmp_path):
    config = tmp_path / "pg.yaml"
    config.write_text("database: postgresql://fsbill@127.0.0.1:5432/fsbill\n", encoding="utf-8")
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg2'] = None\n"
        "from fsbill.cli.main import main\n"
        f"raise SystemExit(main(['config', 'check', '--config', {str(config)!r}]))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "fsbill[postgresql]" in p.stderr and len(p.stderr.splitlines()) == 1


def test_license_version_and_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "version" not in meta and meta["dynamic"] == ["version"]
    assert run("--version").stdout.strip() == f"fsbill {fsbill.__version__}"
    assert not any("psycopg" in d for d in meta["dependencies"])
    assert any("psycopg" in d for d in meta["optional-dependencies"]["postgresql"])
    assert "fsbill[postgresql]" in meta["optional-dependencies"]["test"]


def test_simulate_takes_every_setting_from_the_same_place_as_every_command(tmp_path, monkeypatch):
    """`time_scale` was read only from --config while `listen` also came from $FSBILL_CONFIG:
    the README's demo ran the emulator at real time against a 30x server."""
    from fsbill.cli.common import load
    from fsbill.cli.main import build_parser
    from fsbill.cli.simulate import _server, _time_scale

    env_cfg, flag_cfg = tmp_path / "env.yaml", tmp_path / "flag.yaml"
    env_cfg.write_text("listen: 127.0.0.1:8195\ntime_scale: 30\n", encoding="utf-8")
    flag_cfg.write_text("listen: 127.0.0.1:8196\ntime_scale: 7\n", encoding="utf-8")
    parser = build_parser()

    def seen(*argv: str) -> tuple[tuple[str, int], float]:
        args = parser.parse_args(["simulate", *argv])
        settings = load(args)
        return _server(args, settings), _time_scale(args, settings)

    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    assert seen() == (("127.0.0.1", 8084), 1.0)
    monkeypatch.setenv("FSBILL_CONFIG", str(env_cfg))
    assert seen() == (("127.0.0.1", 8195), 30.0)
    assert seen("--config", str(flag_cfg)) == (("127.0.0.1", 8196), 7.0)
    assert seen("--time-scale", "2", "--server", "127.0.0.1:9") == (("127.0.0.1", 9), 2.0)


SECRETS = ("pg-Secret-1", "fs-Secret-2", "fs-Secret-3", "cdr-Secret-4")


def _secret_config(tmp_path: Path, database: str) -> Path:
    config = tmp_path / "secret.yaml"
    config.write_text(
        f"database: '{database}'\n"
        "switches:\n"
        f"  - {{name: fs1, event_socket: '10.0.0.1:8021', password: {SECRETS[1]}}}\n"
        f"  - {{name: fs2, event_socket: '10.0.0.2:8021', password: {SECRETS[2]}}}\n"
        f"cdr_intake: {{listen: '127.0.0.1:0', user: fsbill, password: {SECRETS[3]}}}\n",
        encoding="utf-8",
    )
    return config


def test_config_check_never_prints_a_secret(tmp_path):
    """The systemd unit runs `config check` before every start: its output goes to the journal."""
    config = _secret_config(tmp_path, f"postgresql://billing:{SECRETS[0]}@127.0.0.1:5432/fsbill")
    text = run("config", "check", "--config", str(config))
    as_json = run("config", "check", "--config", str(config), "--json")
    for p in (text, as_json):
        assert p.returncode == 0, p.stderr
        assert not any(secret in p.stdout + p.stderr for secret in SECRETS), p.stdout
    shown = json.loads(as_json.stdout)["settings"]
    assert shown["database"] == "postgresql://billing:********@127.0.0.1:5432/fsbill"  # which database: still said
    assert [s["password"] for s in shown["switches"]] == ["********", "********"]
    assert shown["switches"][0]["event_socket"] == "10.0.0.1:8021"
    assert shown["cdr_intake"]["password"] == "********" and shown["cdr_intake"]["user"] == "fsbill"
    assert yaml.safe_load(text.stdout.partition("\n")[2]) == shown
    # an unset secret is shown as unset, not as a mask
    plain = tmp_path / "plain.yaml"
    plain.write_text("database: sqlite:///x.db\n", encoding="utf-8")
    shown = json.loads(run("config", "check", "--config", str(plain), "--json").stdout)["settings"]
    assert shown["cdr_intake"]["password"] == "" and shown["database"] == "sqlite:///x.db"


def test_a_bad_database_url_is_refused_without_printing_its_password(tmp_path):
    config = _secret_config(tmp_path, f"postgresql://billing:{SECRETS[0]}@127.0.0.1:5432/")
    p = run("account", "list", "--config", str(config))
    assert p.returncode == 2 and "names no database" in p.stderr and SECRETS[0] not in p.stderr


def test_config_check_connect_opens_the_database_and_exits_4_when_it_cannot(tmp_path, pg_url):
    # not by default: a database outage at boot must not stop `serve` (on_db_error: allow)
    down = _secret_config(tmp_path, f"postgresql://billing:{SECRETS[0]}@127.0.0.1:1/fsbill")
    assert run("config", "check", "--config", str(down)).returncode == 0
    p = run("config", "check", "--config", str(down), "--connect")
    assert p.returncode == 4 and p.stdout == "" and len(p.stderr.splitlines()) == 1, p.stderr
    assert "postgresql://billing:********@127.0.0.1:1/fsbill cannot be reached" in p.stderr
    assert SECRETS[0] not in p.stderr
    p = run("config", "check", "--config", str(down), "--connect", "--json")
    assert p.returncode == 4 and json.loads(p.stderr)["kind"] == "database"
    up = _secret_config(tmp_path, pg_url)
    p = run("config", "check", "--config", str(up), "--connect", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["database_reachable"] is True, p.stderr
    # SQLite: an existing file is opened; a missing one is not created, its directory must be writable
    sqlite = tmp_path / "lite.yaml"
    sqlite.write_text(f"database: sqlite:///{tmp_path}/new.db\n", encoding="utf-8")
    p = run("config", "check", "--config", str(sqlite), "--connect")
    assert p.returncode == 0 and "reachable" in p.stdout and not (tmp_path / "new.db").exists()
    sqlite.write_text(f"database: sqlite:///{tmp_path}/nowhere/new.db\n", encoding="utf-8")
    p = run("config", "check", "--config", str(sqlite), "--connect")
    assert p.returncode == 4 and "not a writable directory" in p.stderr
