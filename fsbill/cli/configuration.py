"""`fsbill config check`: validate a configuration file and print the effective settings."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import yaml

from fsbill.cli.common import emit, load
from fsbill.config import Settings, printable, redact_url
from fsbill.errors import DatabaseUnavailable


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    config = subparsers.add_parser("config", help="configuration: check a file, show the effective settings")
    sub = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=type(config))
    sub.required = True
    check = sub.add_parser(
        "check",
        parents=[parent],
        help="validate the config (--config, else $FSBILL_CONFIG, else defaults) and print every effective setting",
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also open the database and exit 4 if it cannot be reached (not by default: with "
        "on_db_error: allow, serve must start during a database outage)",
    )
    check.set_defaults(func=_check)


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting, defaults included, as plain YAML/JSON values, secrets hidden
    (fsbill.config.printable: passwords as ********, a database URL without its password)."""
    shown: dict[str, Any] = printable(settings)
    return shown


def _check(args: argparse.Namespace) -> int:
    settings = load(args)  # raises ConfigError naming the key
    from fsbill.db.connection import require_driver

    require_driver(settings.database)
    source = getattr(args, "config", None) or os.environ.get("FSBILL_CONFIG") or None
    data = effective(settings)
    where = source or "built-in defaults (no --config, no $FSBILL_CONFIG)"
    result: dict[str, Any] = {"config": source, "valid": True, "settings": data}
    header = f"# {where}: valid"
    if getattr(args, "connect", False):
        _connect(settings)  # DatabaseUnavailable: exit 4, one line, the URL without its password
        result["database_reachable"] = True
        header += f"\n# database {redact_url(settings.database)}: reachable"
    emit(
        args,
        result,
        lambda: header + "\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip(),
    )
    return 0


def _connect(settings: Settings) -> None:
    """Open the configured database and run one query. A SQLite file that does not exist yet is
    not opened (that would create it): its directory must exist and be writable, as `serve`
    will create it there."""
    from fsbill.db import Store

    shown = redact_url(settings.database)
    if settings.database.startswith("sqlite:///"):
        from urllib.parse import unquote

        path = Path(unquote(settings.database[len("sqlite:///") :]))
        if not path.exists():
            folder = path.parent if str(path.parent) else Path(".")
            if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                raise DatabaseUnavailable(
                    f"database {shown}: {path} does not exist and its directory {folder} is not a writable directory"
                )
            return
    store = Store(settings.database, pool_size=1, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        with store.reading() as db:
            db.execute_sql("SELECT 1")
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(f"database {shown} cannot be reached: {exc}") from None
    finally:
        store.close()
