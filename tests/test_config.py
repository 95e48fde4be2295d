"""fsbill.config: one YAML file, every key defaulted, every mistake named by its key."""

from __future__ import annotations

import dataclasses
import re

import pytest

from fsbill.config import DEFAULT_REJECTIONS, REJECT_REASONS, Cutoff, Rejection, Settings, load_settings
from fsbill.db import Store
from fsbill.errors import ConfigError


@pytest.fixture(autouse=True)
def no_env_config(monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)


def write(tmp_path, text, name="fsbill.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(tmp_path, text):
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text))
    message = str(exc.value)
    assert "\n" not in message, message
    return message


# -- defaults and where the file comes from ----------------------------------------------------------
def test_defaults_without_any_file():
    s = load_settings()
    assert s.database == "sqlite:///fsbill.db"
    assert s.listen_address() == ("127.0.0.1", 8084)
    assert s.metrics_address() == ("127.0.0.1", 9184)
    assert s.auto_migrate is True
    assert s.cutoff == Cutoff()
    assert dict(s.rejections) == DEFAULT_REJECTIONS
    assert s.lease_effective_s == 3 * s.heartbeat_s
    assert s.node  # the host name


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.database = "sqlite:///other.db"


def test_empty_file_means_defaults(tmp_path):
    assert load_settings(write(tmp_path, "")).database == "sqlite:///fsbill.db"
    assert load_settings(write(tmp_path, "# only a comment\n")) == load_settings(write(tmp_path, "", "b.yaml"))


def test_explicit_path(tmp_path):
    s = load_settings(write(tmp_path, "database: sqlite:////var/lib/fsbill/x.db\nheartbeat_s: 5\n"))
    assert s.database == "sqlite:////var/lib/fsbill/x.db"
    assert s.heartbeat_s == 5
    assert s.slice_s == Settings().slice_s  # untouched keys keep their defaults


def test_fsbill_config_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FSBILL_CONFIG", write(tmp_path, "slice_s: 30\n"))
    assert load_settings().slice_s == 30


def test_explicit_path_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FSBILL_CONFIG", write(tmp_path, "slice_s: 30\n", "env.yaml"))
    assert load_settings(write(tmp_path, "slice_s: 45\n", "arg.yaml")).slice_s == 45


def test_overrides_win_over_the_file_and_none_is_ignored(tmp_path):
    path = write(tmp_path, "slice_s: 30\nheartbeat_s: 7\n")
    s = load_settings(path, overrides={"slice_s": 60, "heartbeat_s": None})
    assert (s.slice_s, s.heartbeat_s) == (60, 7)


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "nope.yaml"))


def test_invalid_yaml_says_where(tmp_path):
    message = error_of(tmp_path, "database: sqlite:///x.db\nslice_s: [1,\n")
    assert "not valid YAML" in message and "line" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    assert "must be a mapping" in error_of(tmp_path, text)


# -- every value checked, every message names the key --------------------------------------------
BAD_VALUES = [
    ("unknown: 1", "unknown"),
    ("databse: sqlite:///x.db", "databse"),
    ("database: 5", "database"),
    ("database: mysql://root@localhost/fsbill", "database"),
    ("database: sqlite://relative.db", "database"),
    ("database: fsbill.db", "database"),
    ("heartbeat_s: 0", "heartbeat_s"),
    ("heartbeat_s: -5", "heartbeat_s"),
    ("heartbeat_s: ten", "heartbeat_s"),
    ("heartbeat_s: 1.5", "heartbeat_s"),
    ("heartbeat_s: true", "heartbeat_s"),
    ("slice_s: 0", "slice_s"),
    ("max_call_s: -1", "max_call_s"),
    ("max_ring_s: 0", "max_ring_s"),
    ("pool_size: 0", "pool_size"),
    ("esl_max_connections: 0", "esl_max_connections"),
    ("lease_s: -1", "lease_s"),
    ("auto_migrate: maybe", "auto_migrate"),
    ("auto_migrate: 1", "auto_migrate"),
    ("on_db_error: ignore", "on_db_error"),
    ("log_format: xml", "log_format"),
    ("log_level: loud", "log_level"),
    ("sqlite_synchronous: sometimes", "sqlite_synchronous"),
    ("time_scale: 0", "time_scale"),
    ("time_scale: fast", "time_scale"),
    ("international_prefix: '+'", "international_prefix"),
    ("international_prefix: 0", "international_prefix"),
    ("listen: 8084", "listen"),
    ("listen: 'localhost:http'", "listen"),
    ("listen: '127.0.0.1:70000'", "listen"),
    ("metrics_listen: nowhere", "metrics_listen"),
    ("allow_peers: [not-a-network]", "allow_peers"),
    ("allow_peers: 12", "allow_peers"),
    ("node: [a, b]", "node"),
    ("route: 12", "route"),
    # nested: cutoff.*
    ("cutoff: [hangup]", "cutoff"),
    ("cutoff: {mode: drop}", "cutoff.mode"),
    ("cutoff: {modus: hangup}", "cutoff.modus"),
    ("cutoff: {margin_s: -1}", "cutoff.margin_s"),
    ("cutoff: {margin_s: 0}", "cutoff.margin_s"),  # FreeSWITCH runs the cut-off up to 0.5 s late
    ("nibblebill_compat: maybe", "nibblebill_compat"),
    ("nibblebill_allow_zero_rate: true", "nibblebill_allow_zero_rate"),  # without nibblebill_compat
    ("cutoff: {warning_s: -10}", "cutoff.warning_s"),
    ("cutoff: {warning_s: soon}", "cutoff.warning_s"),
    ("cutoff: {warning_leg: cleg}", "cutoff.warning_leg"),
    ("cutoff: {hangup_cause: 17}", "cutoff.hangup_cause"),
    # nested: rejections.<reason>.*
    ("rejections: [suspended]", "rejections"),
    ("rejections: {broke: {action: hangup}}", "rejections.broke"),
    ("rejections: {suspended: {action: drop}}", "rejections.suspended.action"),
    ("rejections: {suspended: {actoin: hangup}}", "rejections.suspended.actoin"),
    ("rejections: {insufficient_funds: {code: 200}}", "rejections.insufficient_funds.code"),
    ("rejections: {insufficient_funds: {code: '402'}}", "rejections.insufficient_funds.code"),
    ("rejections: {channel_limit: hangup}", "rejections.channel_limit"),
]


@pytest.mark.parametrize("text, key", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_fails_naming_the_key(tmp_path, text, key):
    message = error_of(tmp_path, text + "\n")
    assert key in message, message


def test_only_the_first_mistake_is_reported_as_one_line(tmp_path):
    message = error_of(tmp_path, "heartbeat_s: 0\nslice_s: 0\n")
    assert message.count(":") >= 1 and "\n" not in message


# -- good values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://fsbill@db.example:5432/fsbill",
        "postgresql://fsbill:s%40cret@10.0.0.5:5433/billing",
        "postgres://postgres@127.0.0.1/fsbill",
        "sqlite:///relative/fsbill.db",
        "sqlite:////var/lib/fsbill/fsbill.db",
    ],
)
def test_database_urls_accepted(tmp_path, url):
    assert load_settings(write(tmp_path, f"database: '{url}'\n")).database == url


def test_nested_values_merge_with_defaults(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            "cutoff:\n  mode: transfer\n  transfer_extension: topup_ivr\n"
            "rejections:\n  suspended: {action: respond, code: 403, text: Forbidden}\n",
        )
    )
    assert s.cutoff.mode == "transfer" and s.cutoff.transfer_extension == "topup_ivr"
    assert s.cutoff.margin_s == Cutoff().margin_s
    assert s.rejection("suspended") == Rejection(action="respond", code=403, text="Forbidden")
    assert s.rejection("channel_limit") == DEFAULT_REJECTIONS["channel_limit"]
    assert set(s.rejections) == set(REJECT_REASONS)


def test_null_sections_mean_defaults(tmp_path):
    s = load_settings(write(tmp_path, "cutoff:\nrejections: {suspended: }\n"))
    assert s.cutoff == Cutoff()
    assert s.rejection("suspended") == Rejection()


def test_typed_values(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            "time_scale: 10\nesl_command_timeout_s: 2\nallow_peers: 10.0.0.0/8\nlease_s: 0\n"
            "metrics_listen: ''\nlisten: '[::1]:8084'\nlog_level: DEBUG\n",
        )
    )
    assert s.time_scale == 10.0 and isinstance(s.time_scale, float)
    assert s.esl_command_timeout_s == 2.0 and isinstance(s.esl_command_timeout_s, float)
    assert s.allow_peers == ("10.0.0.0/8",)
    assert s.peer_allowed("10.1.2.3") and not s.peer_allowed("192.168.1.1") and not s.peer_allowed("junk")
    assert s.metrics_address() is None
    assert s.listen_address() == ("::1", 8084)


# -- the database URL reaches the store -------------------------------------------------------------
@pytest.mark.parametrize(
    "url, key",
    [
        ("sqlite:///", "database"),
        ("postgresql://fsbill@127.0.0.1:5432", "database"),
        ("postgresql://fsbill@127.0.0.1:5432/", "database"),
        ("mysql://root@localhost/fsbill", "database"),
        ("sqlite:////no/such/directory/fsbill.db", "database"),
    ],
)
def test_store_refuses_unusable_database_urls(url, key):
    with pytest.raises(ConfigError) as exc:
        Store(url)
    assert str(exc.value).startswith(f"{key}:")


def test_store_accepts_configured_sqlite(tmp_path):
    s = load_settings(write(tmp_path, f"database: 'sqlite:///{tmp_path}/x.db'\n"))
    store = Store(s.database)
    try:
        assert store.kind == "sqlite" and store.ping()
    finally:
        store.close()


def test_margin_refusal_explains_the_lateness_and_nibblebill_defaults_off():
    from fsbill.config import MIN_MARGIN_S, load_settings
    from fsbill.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_settings(None, {"cutoff": {"margin_s": 0}})
    assert "cutoff.margin_s" in str(info.value) and "0.5 s late" in str(info.value) and MIN_MARGIN_S == 1
    s = load_settings(None, {})
    assert s.nibblebill_compat is False and s.nibblebill_allow_zero_rate is False
    s = load_settings(None, {"nibblebill_compat": True, "nibblebill_allow_zero_rate": True})
    assert s.nibblebill_compat and s.nibblebill_allow_zero_rate


# -- secrets: hidden wherever settings are printed ------------------------------------------------
def _secret_like(name: str) -> bool:
    return any(word in name for word in ("password", "secret", "token", "database", "dsn", "api_key"))


def test_every_setting_that_looks_like_a_secret_is_marked_as_one():
    """A secret a later change adds is hidden by `printable` only if its field says so."""
    from fsbill.config import CdrIntake, SwitchConfig

    for cls in (Settings, SwitchConfig, CdrIntake, Cutoff, Rejection):
        for f in dataclasses.fields(cls):
            if _secret_like(f.name):
                assert f.metadata.get("secret") in ("value", "url"), f"{cls.__name__}.{f.name} is not marked secret"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:********@h:5432/db"),
        ("postgresql://u:p%40ss@w@h/db", "postgresql://u:********@h/db"),  # '@' in the password
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgresql://h/db?sslmode=require&password=pw", "postgresql://h/db?sslmode=require&password=********"),
        ("postgresql://u:pw@h/db?PASSWORD=x&a=1", "postgresql://u:********@h/db?PASSWORD=********&a=1"),
        ("sqlite:///fsbill.db", "sqlite:///fsbill.db"),
        ("", ""),
    ],
)
def test_redact_url(url, shown):
    from fsbill.config import redact_url

    assert redact_url(url) == shown


def test_printable_hides_every_secret_and_keeps_the_rest(tmp_path):
    from fsbill.config import printable

    path = tmp_path / "f.yaml"
    path.write_text(
        "database: postgresql://u:TOPSECRET@h/db\n"
        "switches: [{name: a, password: TOPSECRET2}]\n"
        "cdr_intake: {listen: '127.0.0.1:0', password: TOPSECRET3}\n",
        encoding="utf-8",
    )
    settings = load_settings(str(path))
    shown = printable(settings)
    assert "TOPSECRET" not in repr(shown)
    assert shown["switches"][0]["name"] == "a" and shown["heartbeat_s"] == settings.heartbeat_s
    assert settings.database == "postgresql://u:TOPSECRET@h/db"  # the settings themselves are intact


def test_the_api_is_off_by_default_and_its_listen_address_is_checked(tmp_path):
    assert load_settings(None, {}).api.address() is None
    cfg = tmp_path / "api.yaml"
    cfg.write_text("api: {listen: '127.0.0.1:8085'}\n")
    assert load_settings(str(cfg)).api.address() == ("127.0.0.1", 8085)
    for text, says in (
        ("api: {listen: 'nowhere'}\n", "api.listen: expected HOST:PORT"),
        ("api: {listen: '127.0.0.1:8085', token: x}\n", "unknown config key 'api.token'"),
        ("api: [1]\n", "api: expected a mapping"),
    ):
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_settings(str(cfg))
