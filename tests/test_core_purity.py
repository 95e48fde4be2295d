"""fsbill/core/ is pure: importing any of it loads no I/O library and no adapter.

Checked in a fresh interpreter, since inside pytest logging, socket and gevent are loaded already.
"""

import json
import pkgutil
import subprocess
import sys

import fsbill.core

FORBIDDEN = (
    "socket",
    "gevent",
    "greenswitch",
    "peewee",
    "playhouse",
    "psycopg",
    "psycopg2",
    "sqlite3",
    "_sqlite3",
    "yaml",
    "prometheus_client",
    "logging",
    "subprocess",
)
ALLOWED_FSBILL = {"fsbill", "fsbill.errors"}

PROBE = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def core_modules() -> list[str]:
    return ["fsbill.core"] + [f"fsbill.core.{m.name}" for m in pkgutil.iter_modules(fsbill.core.__path__)]


def loaded_by(*modules: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def impure(loaded: set[str]) -> list[str]:
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    bad += [m for m in loaded if m.startswith("fsbill") and not m.startswith("fsbill.core") and m not in ALLOWED_FSBILL]
    return sorted(bad)


def test_the_core_has_modules():
    assert {"fsbill.core.money", "fsbill.core.rating", "fsbill.core.grant", "fsbill.core.call"} <= set(core_modules())


# The call machine and the modules its phases live in: each is checked alone below.
CALL_MACHINE = (
    "lifecycle",
    "callstate",
    "admission",
    "refusal",
    "live",
    "transfer",
    "settlement",
    "commands",
    "events",
)


def test_the_call_machine_is_all_in_the_core():
    assert {f"fsbill.core.{name}" for name in CALL_MACHINE} <= set(core_modules())


def test_importing_the_whole_core_loads_nothing_impure():
    assert impure(loaded_by(*core_modules())) == []


def test_each_core_module_alone_is_pure():
    for module in core_modules():
        assert impure(loaded_by(module)) == [], module


def test_the_probe_would_notice_an_impure_import():
    assert "fsbill.config" in impure(loaded_by("fsbill.config"))
    assert "yaml" in impure(loaded_by("fsbill.config"))
