"""The deploy/ kit: every file parses, the example config covers every setting and loads, and the
alert rules and the dashboard only use metrics fsbill really exposes."""

from __future__ import annotations

import configparser
import dataclasses
import json
import re
import typing
from collections import abc
from pathlib import Path

import pytest
import yaml
from prometheus_client.exposition import generate_latest

from fsbill import config as fsconfig
from fsbill.config import REJECT_REASONS, Cutoff, Rejection, Settings, load_settings
from fsbill.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC_NAME = re.compile(r"fsbill_[a-z_]+")

# Keys whose example value deliberately differs from the default (the comment says the default).
EXAMPLE_DIFFERS = {"database", "node"}


def _yaml(name: str):
    with open(DEPLOY / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _dashboard() -> dict:
    with open(DEPLOY / "grafana-dashboard.json", encoding="utf-8") as fh:
        return json.load(fh)


def _alert_rules() -> list[dict]:
    return [rule for group in _yaml("fsbill-alerts.yml")["groups"] for rule in group["rules"]]


def _dashboard_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return out


def _exposed_names() -> set[str]:
    """Every series name a fresh Metrics instance can expose, from its text exposition.

    Labelled metrics have no samples until first used, so names come from the `# TYPE` lines too;
    a histogram family `x` exposes `x_bucket`, `x_sum` and `x_count`."""
    metrics = Metrics()
    text = generate_latest(metrics.registry).decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# -- every file parses -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fsbill.yaml", "prometheus.yml", "fsbill-alerts.yml"])
def test_yaml_files_parse(name):
    assert isinstance(_yaml(name), dict)


def test_dashboard_json_parses():
    assert isinstance(_dashboard(), dict)


def test_every_deploy_file_is_known():
    expected = {
        "fsbill.service",
        "fsbill.yaml",
        "POSTGRESQL.md",
        "prometheus.yml",
        "fsbill-alerts.yml",
        "grafana-dashboard.json",
        "README.md",
    }
    present = {p.name for p in DEPLOY.iterdir() if p.is_file()}
    assert expected <= present
    for p in DEPLOY.iterdir():
        if p.suffix in (".yml", ".yaml"):
            assert isinstance(_yaml(p.name), dict), p.name
        elif p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))


# -- the example config ------------------------------------------------------------------------------------
def _field_type(cls: type, f: dataclasses.Field):
    return typing.get_type_hints(cls, vars(fsconfig))[f.name]


def _missing_keys(cls: type, data: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields of `cls` (recursively) that `data` does not set."""
    missing = []
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key", f.name)  # the YAML key, when it is not the field's name (smtp `from`)
        name = f"{prefix}{key}"
        if key not in data:
            missing.append(name)
            continue
        ftype = _field_type(cls, f)
        value = data[key]
        if dataclasses.is_dataclass(ftype):
            missing += _missing_keys(ftype, value or {}, f"{name}.")
        elif isinstance(typing.get_origin(ftype), type) and issubclass(typing.get_origin(ftype), abc.Mapping):
            args = typing.get_args(ftype)
            if args and dataclasses.is_dataclass(args[1]):
                # A mapping of reason -> Rejection: every reason listed, every field used somewhere.
                value = value or {}
                missing += [f"{name}.{reason}" for reason in REJECT_REASONS if reason not in value]
                used = {k for spec in value.values() for k in (spec or {})}
                missing += [f"{name}.*.{g.name}" for g in dataclasses.fields(args[1]) if g.name not in used]
    return missing


def test_example_config_loads():
    settings = load_settings(str(DEPLOY / "fsbill.yaml"))
    assert isinstance(settings, Settings)


def test_example_config_sets_every_setting():
    data = _yaml("fsbill.yaml")
    assert _missing_keys(Settings, data) == []
    # and sets nothing the loader does not know (load_settings would fail anyway)
    assert set(data) <= {f.name for f in dataclasses.fields(Settings)}


def test_missing_key_detection_works():
    """The coverage check itself notices a setting with no example (e.g. one added later)."""
    data = _yaml("fsbill.yaml")
    del data["pool_size"]
    del data["cutoff"]["warning_leg"]
    del data["rejections"]["db_error"]
    assert set(_missing_keys(Settings, data)) == {"pool_size", "cutoff.warning_leg", "rejections.db_error"}


def test_example_config_values_are_the_defaults():
    settings = load_settings(str(DEPLOY / "fsbill.yaml"))
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        if f.name in EXAMPLE_DIFFERS:
            continue
        assert getattr(settings, f.name) == getattr(defaults, f.name), f.name
    assert settings.cutoff == Cutoff()
    assert dict(settings.rejections) == dict(fsconfig.DEFAULT_REJECTIONS)
    assert all(isinstance(r, Rejection) for r in settings.rejections.values())


def test_example_config_documents_every_key():
    """Each top-level key and each cutoff key has a comment line right above it (or above its block)."""
    lines = (DEPLOY / "fsbill.yaml").read_text(encoding="utf-8").splitlines()
    keys = {f.name for f in dataclasses.fields(Settings)} | {f.name for f in dataclasses.fields(Cutoff)}
    for i, line in enumerate(lines):
        m = re.match(r"^\s*([a-z_]+):", line)
        if not m or m.group(1) not in keys:
            continue
        j = i - 1
        while j >= 0 and re.match(r"^\s*[a-z_]+:", lines[j]) and m.group(1).startswith("transfer_"):
            j -= 1  # transfer_extension/_dialplan/_context share one comment
        assert j >= 0 and lines[j].lstrip().startswith("#"), f"{m.group(1)} has no comment above it"


# -- metric names ----------------------------------------------------------------------------------------------
def test_exposed_names_include_the_documented_metrics():
    names = _exposed_names()
    for name in (
        "fsbill_calls_total",
        "fsbill_live_calls",
        "fsbill_reserved_amount",
        "fsbill_charged_amount_total",
        "fsbill_setup_seconds_bucket",
        "fsbill_db_seconds_bucket",
        "fsbill_build_info",
    ):
        assert name in names


def _alert_exprs() -> list[str]:
    return [rule["expr"] for rule in _alert_rules()]


def _dashboard_exprs() -> list[str]:
    dashboard = _dashboard()
    exprs = [t["expr"] for p in _dashboard_panels(dashboard) for t in p.get("targets", []) if "expr" in t]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
        exprs.append(var.get("definition", ""))
    return exprs


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_referenced_metrics_exist(source):
    exprs = _alert_exprs() if source == "alerts" else _dashboard_exprs()
    referenced = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert referenced, "no fsbill metric referenced at all"
    unknown = referenced - _exposed_names()
    assert not unknown, f"{source} use metrics fsbill does not expose: {sorted(unknown)}"


# -- alert rules ----------------------------------------------------------------------------------------------
def test_alert_rules_are_complete():
    rules = _alert_rules()
    assert rules
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in rules:
        assert rule.get("expr"), rule["alert"]
        assert "for" in rule, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), rule["alert"]
        assert rule.get("annotations", {}).get("summary"), rule["alert"]


def test_alerts_cover_the_required_conditions():
    exprs = {rule["alert"]: rule["expr"] for rule in _alert_rules()}

    def some(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs.values())

    assert some(r"fsbill_db_errors_total"), "DB errors rising"
    assert some(r"fsbill_cutoffs_total"), "cut-offs spike"
    assert some(r"fsbill_live_calls\s*>"), "live calls near capacity"
    assert some(r'fsbill_esl_refused_total\{reason="capacity"\}'), "refused at capacity"
    assert some(r"fsbill_reserved_amount[\s\S]*fsbill_live_calls[\s\S]*== 0"), "reservation leak"
    assert some(r"fsbill_pending_cdrs"), "pending CDRs not draining"
    assert some(r"fsbill_esl_protocol_errors_total"), "ESL protocol errors"
    assert some(r"\bup\{[^}]*\} == 0"), "node down"
    assert some(r"probe_success"), "healthz"


def test_prometheus_config_scrapes_fsbill_and_loads_the_rules():
    cfg = _yaml("prometheus.yml")
    assert "fsbill-alerts.yml" in cfg["rule_files"]
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    targets = [t for sc in jobs["fsbill"]["static_configs"] for t in sc["targets"]]
    assert targets and all(t.endswith(":9184") for t in targets)
    assert any("/healthz" in t for sc in jobs["fsbill-healthz"]["static_configs"] for t in sc["targets"])


# -- dashboard --------------------------------------------------------------------------------------------------
REQUIRED_PANELS = {
    "Call setups/s: accepted vs rejected (by reason)": [r'result="accepted"', r'result="rejected"', r"by \(reason\)"],
    "Live calls": [r"fsbill_live_calls"],
    "Money reserved": [r"fsbill_reserved_amount"],
    "Money charged per minute": [r"rate\(fsbill_charged_amount_total[^)]*\)\)? \* 60"],
    "Call setup latency p50 / p99": [
        r"histogram_quantile\(0\.5, .*fsbill_setup_seconds_bucket",
        r"histogram_quantile\(0\.99, .*fsbill_setup_seconds_bucket",
    ],
    "Database latency p99 by operation": [r"fsbill_db_seconds_bucket"],
    "Database errors by operation": [r"fsbill_db_errors_total"],
    "Cut-offs and warnings per minute": [r"fsbill_cutoffs_total", r"fsbill_warnings_scheduled_total"],
    "CDRs written by result per minute": [r"by \(result\)[^\n]*fsbill_cdrs_written_total"],
    "Recovered calls": [r"fsbill_recovered_calls_total"],
}


def test_dashboard_has_the_required_panels():
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert any(i.get("name") == "DS_PROMETHEUS" for i in dashboard["__inputs"])
    panels = {p["title"]: p for p in _dashboard_panels(dashboard)}
    for title, patterns in REQUIRED_PANELS.items():
        assert title in panels, f"missing panel {title!r}"
        exprs = "\n".join(t["expr"] for t in panels[title]["targets"])
        for pattern in patterns:
            assert re.search(pattern, exprs), f"panel {title!r}: no expression matches {pattern!r}"
    assert panels["Money reserved"]["type"] == "gauge"


def test_dashboard_panels_are_well_formed():
    dashboard = _dashboard()
    ids = [p["id"] for p in _dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in _dashboard_panels(dashboard):
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
                assert t["expr"].count("(") == t["expr"].count(")"), p["title"]


# -- systemd unit ---------------------------------------------------------------------------------------------
def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "fsbill.service").read_text(encoding="utf-8"))
    return parser


def test_systemd_unit():
    unit = _unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service.get("User") and service["User"] != "root"
    assert service.get("Restart") in ("on-failure", "always")
    assert service.get("RestartSec")
    assert "fsbill serve" in service.get("ExecStart", "")
    assert "--config /etc/fsbill/fsbill.yaml" in service["ExecStart"]
    assert service.get("NoNewPrivileges") == "yes"
    assert service.get("ProtectSystem") == "strict"
    assert "/var/lib/fsbill" in service.get("ReadWritePaths", "")
    assert int(service["LimitNOFILE"]) > Settings().esl_max_connections
    assert service.get("KillSignal") == "SIGTERM"
    stop_s = int(re.fullmatch(r"(\d+)s?", service["TimeoutStopSec"]).group(1))
    assert stop_s > Settings().shutdown_grace_s + 10
    assert "network-online.target" in unit["Unit"].get("After", "")
