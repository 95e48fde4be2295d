"""`fsbill config check`: validate a configuration file and print the effective settings."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

import yaml

from fsbill.cli.common import emit, load
from fsbill.config import Settings


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    config = subparsers.add_parser("config", help="configuration: check a file, show the effective settings")
    sub = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=type(config))
    sub.required = True
    check = sub.add_parser(
        "check",
        parents=[parent],
        help="validate the config (--config, else $FSBILL_CONFIG, else defaults) and print every effective setting",
    )
    check.set_defaults(func=_check)


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting, defaults included, as plain YAML/JSON values."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(settings)


def _check(args: argparse.Namespace) -> int:
    settings = load(args)  # raises ConfigError naming the key
    from fsbill.db.connection import require_driver

    require_driver(settings.database)
    source = getattr(args, "config", None) or os.environ.get("FSBILL_CONFIG") or None
    data = effective(settings)
    where = source or "built-in defaults (no --config, no $FSBILL_CONFIG)"
    emit(
        args,
        {"config": source, "valid": True, "settings": data},
        lambda: f"# {where}: valid\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip(),
    )
    return 0
