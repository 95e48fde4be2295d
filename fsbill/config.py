"""Settings: one YAML file, every key with a default, loaded once into a frozen object.

`fsbill serve` with no file at all runs on the embedded SQLite database ./fsbill.db.
Unknown keys and bad values fail with one message naming the key (`ConfigError`).
The file is found from `--config PATH`, else the FSBILL_CONFIG environment variable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from fsbill.config_services import (  # re-exported: every setting is read from here
    PAYPAL_VERIFY_URL,
    STRIPE_TOLERANCE_S,
    ApiConfig,
    Charges,
    NotifyConfig,
    Payments,
    PaypalConfig,
    SmtpConfig,
    StripeConfig,
    WebhookConfig,
)
from fsbill.errors import ConfigError
from fsbill.redaction import (  # re-exported
    REDACTED,
    SECRET,
    SECRET_URL,
    printable,
    redact_url,
    redact_value,
)

REJECT_REASONS = (
    "unknown_account",
    "suspended",
    "closed",
    "invalid_number",
    "no_rate",
    "insufficient_funds",
    "channel_limit",
    "no_route",
    "vendor_unavailable",
    "db_error",
    # fraud guards (docs/FRAUD.md)
    "spend_cap",
    "destination_blocked",
    "rate_too_high",
    "call_rate",
    # inbound numbers (docs/DIDS.md): an inbound call to a number that is not ours
    "unknown_did",
)


@dataclass(frozen=True)
class Rejection:
    """What FreeSWITCH is told to do with a call fsbill refuses.

    action `respond`: `respond <code> <text>` (a SIP final response, e.g. 402 Payment Required);
    action `hangup`: optional prompt played first (needs answer), then hangup with `cause`.
    """

    action: str = "respond"
    code: int = 402
    text: str = "Payment Required"
    cause: str = "CALL_REJECTED"
    prompt: str = ""


DEFAULT_REJECTIONS: dict[str, Rejection] = {
    "unknown_account": Rejection(action="hangup", cause="CALL_REJECTED"),
    "suspended": Rejection(action="hangup", cause="OUTGOING_CALL_BARRED"),
    "closed": Rejection(action="respond", code=403, text="Forbidden"),  # `fsbill account close`
    "invalid_number": Rejection(action="hangup", cause="INVALID_NUMBER_FORMAT"),
    "no_rate": Rejection(action="hangup", cause="NO_ROUTE_DESTINATION"),
    "insufficient_funds": Rejection(action="respond", code=402, text="Payment Required"),
    "channel_limit": Rejection(action="respond", code=486, text="Busy Here"),
    "no_route": Rejection(action="hangup", cause="NO_ROUTE_DESTINATION"),
    # vendors have a rate for the number but none may take the call (all suspended, dearer than
    # the sell price, at their channel limit or in another currency): a temporary condition
    "vendor_unavailable": Rejection(action="respond", code=503, text="Service Unavailable"),
    "db_error": Rejection(action="respond", code=503, text="Service Unavailable"),
    # fraud guards (docs/FRAUD.md): a spend cap reached is like money run out; a destination
    # refused is forbidden; too many new calls a minute is a temporary condition
    "spend_cap": Rejection(action="respond", code=402, text="Payment Required"),
    "destination_blocked": Rejection(action="respond", code=403, text="Forbidden"),
    "rate_too_high": Rejection(action="respond", code=403, text="Forbidden"),
    "call_rate": Rejection(action="respond", code=503, text="Service Unavailable"),
    # an inbound call (fsbill_direction=inbound) to a number that is not ours (docs/DIDS.md)
    "unknown_did": Rejection(action="respond", code=404, text="Not Found"),
}


# How late FreeSWITCH ends a call after the instant it was scheduled for, and so the smallest
# `cutoff.margin_s` that keeps a cut-off call inside what was reserved. A task's runtime is a
# whole epoch second (switch_scheduler.c switch_scheduler_add_task_ex: `runtime` is a time_t,
# a relative cut-off "+N" is switch_epoch_time_now() + N, the current second floored), and the task
# thread runs it on its first pass at or after that second; between passes it waits up to
# 0.5 s for new tasks (task_thread_loop: switch_queue_pop_timeout(..., 500000)). So a call
# answered at `a` and cut `N` s later ends by floor(a) + N + 0.5 <= a + N + 0.5: with
# N = grant - margin_s it ends at most 0.5 - margin_s after its grant, which is never past
# the grant only if margin_s >= 0.5, i.e. 1 in whole seconds. Billing counts every started
# second, so such a call bills at most grant - margin_s + 1 <= grant seconds: all reserved.
SCHEDULER_LATENESS_S = 0.5
MIN_MARGIN_S = 1


@dataclass(frozen=True)
class Cutoff:
    mode: str = "hangup"  # hangup | transfer
    hangup_cause: str = "ALLOTTED_TIMEOUT"
    transfer_extension: str = "fsbill_cutoff"
    transfer_dialplan: str = "XML"
    transfer_context: str = "default"
    # The cut-off is scheduled this many seconds before the grant ends; at least
    # MIN_MARGIN_S (see there for the arithmetic).
    margin_s: int = 1
    warning_s: int = 60
    warning_prompt: str = "tone_stream://%(200,100,440,480);loops=3"
    warning_leg: str = "aleg"


@dataclass(frozen=True)
class SwitchConfig:
    """One FreeSWITCH this node keeps an inbound event-socket connection to (`switches:`)."""

    name: str = ""
    event_socket: str = "127.0.0.1:8021"
    password: str = field(default="ClueCon", metadata=SECRET)

    def address(self) -> tuple[str, int]:
        return parse_hostport(self.event_socket, f"switches.{self.name}.event_socket")


@dataclass(frozen=True)
class CdrIntake:
    """The endpoint FreeSWITCH's mod_json_cdr posts CDRs to (`cdr_intake:`); off while
    `listen` is empty."""

    listen: str = ""
    user: str = "fsbill"
    password: str = field(default="", metadata=SECRET)

    def address(self) -> tuple[str, int] | None:
        return parse_hostport(self.listen, "cdr_intake.listen") if self.listen else None


@dataclass(frozen=True)
class Settings:
    database: str = field(default="sqlite:///fsbill.db", metadata=SECRET_URL)
    node: str = field(default_factory=socket.gethostname)
    listen: str = "127.0.0.1:8084"
    allow_peers: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    metrics_listen: str = "127.0.0.1:9184"
    log_level: str = "info"
    log_format: str = "keyvalue"  # keyvalue | json
    auto_migrate: bool = True
    heartbeat_s: int = 10
    slice_s: int = 120
    max_call_s: int = 14400
    lease_s: int = 0  # 0 = three heartbeats
    max_ring_s: int = 120
    international_prefix: str = "00"
    route: str = ""  # dial string template, e.g. sofia/gateway/carrier/{destination}
    routing: str = "template"  # template | lcr: who picks the bridge when the dialplan does not
    allow_loss: bool = False  # lcr: may a vendor dearer than the sell price carry the call
    on_db_error: str = "reject"  # reject | allow
    db_error_grant_s: int = 60
    on_suspend: str = "finish_grant"  # finish_grant | cut: what a suspension does to live calls
    rates_refresh_s: int = 5  # while the database is down: rate from the cached deck this long without asking
    shutdown_grace_s: int = 10
    workers: int = 1  # serving processes sharing the listening sockets (fsbill.workers)
    cutoff: Cutoff = field(default_factory=Cutoff)
    rejections: Mapping[str, Rejection] = field(default_factory=lambda: dict(DEFAULT_REJECTIONS))
    esl_command_timeout_s: float = 5.0
    esl_max_connections: int = 20000
    esl_max_frame_bytes: int = 1_048_576
    pool_size: int = 10
    sqlite_busy_timeout_ms: int = 5000
    sqlite_synchronous: str = "full"
    time_scale: float = 1.0  # tests and demos only: see fsbill.clock
    switches: tuple[SwitchConfig, ...] = ()
    cdr_intake: CdrIntake = field(default_factory=CdrIntake)
    charges: Charges = field(default_factory=Charges)
    notify: NotifyConfig = field(default_factory=NotifyConfig)  # notices: webhook and email (docs/NOTICES.md)
    api: ApiConfig = field(default_factory=ApiConfig)
    payments: Payments = field(default_factory=Payments)
    # mod_nibblebill dialplans: honour `nibble_account` (who pays) and `nibble_rate` (the price,
    # instead of the deck). Off by default: any channel could otherwise name its own price.
    nibblebill_compat: bool = False
    nibblebill_allow_zero_rate: bool = False  # with nibblebill_compat: accept nibble_rate 0 (free calls)

    @property
    def lease_effective_s(self) -> int:
        return self.lease_s or 3 * self.heartbeat_s

    def listen_address(self) -> tuple[str, int]:
        return parse_hostport(self.listen, "listen")

    def metrics_address(self) -> tuple[str, int] | None:
        if not self.metrics_listen:
            return None
        return parse_hostport(self.metrics_listen, "metrics_listen")

    def peer_allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.allow_peers)

    def rejection(self, reason: str) -> Rejection:
        return self.rejections.get(reason) or DEFAULT_REJECTIONS[reason]


MAX_WORKERS = 64  # `workers`: more processes than this would only contend for the same cores


def parse_hostport(value: str, key: str, connect: bool = False) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets). To listen on, an empty host is every address and port 0
    any free port; to `connect` to, both must be given."""
    host, sep, port = value.rpartition(":")
    lowest = 1 if connect else 0
    if not sep or not port.isdigit() or not lowest <= int(port) < 65536 or (connect and not host):
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


# The scalar annotations of the settings dataclasses (they are strings: `from __future__ import
# annotations`); every other field is validated by its own branch below.
_FIELD_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _check_type(key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    if expected is str and not isinstance(value, str):
        raise ConfigError(f"{key}: expected text, got {value!r}")
    if expected is float and not isinstance(value, float):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown config key {name!r}")
        f = known[key]
        ftype = _FIELD_TYPES.get(f.type if isinstance(f.type, str) else f.type.__name__)
        if key == "cutoff":
            values[key] = _build(Cutoff, value or {}, f"{name}.")
        elif key == "rejections":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name}: expected a mapping of reason -> rejection")
            merged = dict(DEFAULT_REJECTIONS)
            for reason, spec in value.items():
                if reason not in REJECT_REASONS:
                    raise ConfigError(f"unknown rejection reason {name}.{reason} (known: {', '.join(REJECT_REASONS)})")
                merged[reason] = _build(Rejection, spec or {}, f"{name}.{reason}.")
            values[key] = merged
        elif key == "switches":
            values[key] = _switches(value, name)
        elif key == "cdr_intake":
            values[key] = _build(CdrIntake, value or {}, f"{name}.")
        elif key == "charges":
            values[key] = _build(Charges, value or {}, f"{name}.")
        elif key == "notify":
            values[key] = _notify(value, name)
        elif key == "api":
            values[key] = _build(ApiConfig, value or {}, f"{name}.")
        elif key == "payments":
            values[key] = _build(Payments, value or {}, f"{name}.")
        elif key == "stripe" and cls is Payments:
            values[key] = _build(StripeConfig, value or {}, f"{name}.")
        elif key == "paypal" and cls is Payments:
            values[key] = _build(PaypalConfig, value or {}, f"{name}.")
        elif key == "allow_peers":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"{name}: expected a list of networks")
            for net in value:
                try:
                    ipaddress.ip_network(str(net), strict=False)
                except ValueError:
                    raise ConfigError(f"{name}: {net!r} is not an IP network") from None
            values[key] = tuple(str(v) for v in value)
        elif ftype is not None:
            values[key] = _check_type(name, value, ftype)
        else:
            values[key] = value
    obj = cls(**values)
    _validate(obj, prefix)
    return obj


def _notify(value: Any, name: str) -> NotifyConfig:
    if not isinstance(value or {}, Mapping):
        raise ConfigError(f"{name}: expected a mapping with webhook and/or smtp")
    data = dict(value or {})
    if "webhook" in data:
        data["webhook"] = _build(WebhookConfig, data["webhook"] or {}, f"{name}.webhook.")
    if "smtp" in data:
        smtp = data["smtp"] or {}
        if not isinstance(smtp, Mapping):
            raise ConfigError(f"{name}.smtp: expected a mapping of keys")
        if "from_" in smtp:
            raise ConfigError(f"unknown config key '{name}.smtp.from_' (the sender is 'from')")
        smtp = {("from_" if k == "from" else k): v for k, v in smtp.items()}
        data["smtp"] = _build(SmtpConfig, smtp, f"{name}.smtp.")
    return _build(NotifyConfig, data, f"{name}.")


def _switches(value: Any, name: str) -> tuple[SwitchConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{name}: expected a list of switches (name, event_socket, password)")
    out: list[SwitchConfig] = []
    for i, spec in enumerate(value):
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{name}[{i}]: expected a mapping with name, event_socket, password")
        label = spec.get("name") if isinstance(spec.get("name"), str) and spec.get("name") else str(i)
        switch = _build(SwitchConfig, spec, f"{name}.{label}.")
        if not switch.name:
            raise ConfigError(f"{name}[{i}].name: every switch needs a name")
        if any(s.name == switch.name for s in out):
            raise ConfigError(f"{name}.{switch.name}: two switches share this name")
        out.append(switch)
    return tuple(out)


def _validate(obj: Any, prefix: str) -> None:
    def bad(key: str, why: str) -> None:
        raise ConfigError(f"{prefix}{key}: {why}")

    if isinstance(obj, Settings):
        for key in ("heartbeat_s", "slice_s", "max_call_s", "max_ring_s", "pool_size", "esl_max_connections"):
            if getattr(obj, key) <= 0:
                bad(key, "must be positive")
        if not 1 <= obj.workers <= MAX_WORKERS:
            bad("workers", f"must be 1 to {MAX_WORKERS} (one process per core is the most that helps)")
        if obj.lease_s < 0:
            bad("lease_s", "must be 0 (three heartbeats) or positive")
        if obj.routing not in ("template", "lcr"):
            bad("routing", "must be template or lcr")
        if obj.on_db_error not in ("reject", "allow"):
            bad("on_db_error", "must be reject or allow")
        if obj.on_suspend not in ("finish_grant", "cut"):
            bad("on_suspend", "must be finish_grant or cut")
        if obj.log_format not in ("keyvalue", "json"):
            bad("log_format", "must be keyvalue or json")
        if obj.log_level.lower() not in ("debug", "info", "warning", "error"):
            bad("log_level", "must be debug, info, warning or error")
        if obj.sqlite_synchronous.lower() not in ("off", "normal", "full", "extra"):
            bad("sqlite_synchronous", "must be off, normal, full or extra")
        if not obj.time_scale > 0:
            bad("time_scale", "must be positive")
        if not obj.international_prefix.isdigit() and obj.international_prefix != "":
            bad("international_prefix", "must be digits")
        if obj.nibblebill_allow_zero_rate and not obj.nibblebill_compat:
            bad("nibblebill_allow_zero_rate", "only applies with nibblebill_compat: true")
        if not obj.database.startswith(("sqlite:///", "postgresql://", "postgres://")):
            bad("database", "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
        if (obj.payments.stripe.webhook_secret or obj.payments.paypal.receiver_email) and not obj.api.listen:
            bad("payments", "the gateways' webhooks are served by the HTTP API: set api.listen too (docs/PAYMENTS.md)")
        _check_grant_timing(obj, prefix)
        obj.listen_address()
        obj.metrics_address()
    elif isinstance(obj, SwitchConfig):
        obj.address()
        if not obj.password:
            bad("password", "the event socket's password (event_socket.conf.xml) must not be empty")
        if any(c.isspace() for c in obj.name):
            bad("name", "must not contain spaces")
    elif isinstance(obj, CdrIntake):
        if obj.listen:
            obj.address()
            if not obj.user or not obj.password:
                bad("password" if obj.user else "user", "needed when cdr_intake.listen is set (basic auth)")
            if ":" in obj.user:
                bad("user", "must not contain ':'")
    elif isinstance(obj, Charges):
        if obj.interval_s <= 0:
            bad("interval_s", "must be positive (to turn the runs off, set charges.enabled: false)")
    elif isinstance(obj, WebhookConfig):
        if obj.url:
            if not obj.url.startswith(("http://", "https://")):
                bad("url", f"must be an http:// or https:// URL, got {obj.url!r}")
            from fsbill.core.notices import webhook_secret_problem

            problem = webhook_secret_problem(obj.secret)
            if problem:
                bad("secret", problem)
        if not obj.timeout_s > 0:
            bad("timeout_s", "must be positive")
    elif isinstance(obj, SmtpConfig):
        if obj.host:
            if not 0 < obj.port < 65536:
                bad("port", "must be 1-65535")
            if "@" not in obj.from_:
                bad("from", f"the sender's address is needed when smtp.host is set, got {obj.from_!r}")
            if obj.password and not obj.username:
                bad("username", "needed with a password")
        if not obj.timeout_s > 0:
            bad("timeout_s", "must be positive")
    elif isinstance(obj, NotifyConfig):
        for key in ("poll_s", "retry_first_s", "retry_max_s", "lease_s"):
            if not getattr(obj, key) > 0:
                bad(key, "must be positive")
        if obj.retry_max_s < obj.retry_first_s:
            bad("retry_max_s", "must be at least retry_first_s")
        if obj.batch <= 0:
            bad("batch", "must be positive")
        if obj.lease_s < obj.webhook.timeout_s + obj.smtp.timeout_s:
            bad("lease_s", "must be at least webhook.timeout_s + smtp.timeout_s (one attempt must fit in its lease)")
    elif isinstance(obj, ApiConfig):
        obj.address()
    elif isinstance(obj, StripeConfig):
        if obj.webhook_secret and not obj.webhook_secret.startswith("whsec_"):
            bad("webhook_secret", "must be the endpoint's signing secret, whsec_... (Stripe dashboard, Webhooks)")
        if obj.tolerance_s <= 0:
            bad("tolerance_s", "must be positive (Stripe's default is 300)")
    elif isinstance(obj, PaypalConfig):
        if obj.receiver_email and ("@" not in obj.receiver_email or any(c.isspace() for c in obj.receiver_email)):
            bad("receiver_email", f"expected the e-mail address of your PayPal account, got {obj.receiver_email!r}")
        if not obj.verify_url.startswith(("https://", "http://")):
            bad("verify_url", f"expected PayPal's IPN URL, {PAYPAL_VERIFY_URL}")
        if not obj.verify_timeout_s > 0:
            bad("verify_timeout_s", "must be positive")
        if obj.retry_max_s <= 0:
            bad("retry_max_s", "must be positive")
    elif isinstance(obj, Cutoff):
        if obj.mode not in ("hangup", "transfer"):
            bad("mode", "must be hangup or transfer")
        if obj.margin_s < MIN_MARGIN_S:
            bad(
                "margin_s",
                f"must be at least {MIN_MARGIN_S}: FreeSWITCH schedules the cut-off on whole seconds and runs it "
                f"up to {SCHEDULER_LATENESS_S} s late, so a smaller margin lets a call talk past the money "
                f"reserved for it",
            )
        if obj.warning_s < 0:
            bad("warning_s", "must not be negative")
        if obj.warning_leg not in ("aleg", "bleg", "both"):
            bad("warning_leg", "must be aleg, bleg or both")
    elif isinstance(obj, Rejection):
        if obj.action not in ("respond", "hangup"):
            bad("action", "must be respond or hangup")
        if obj.action == "respond" and not 400 <= obj.code <= 699:
            bad("code", "must be a SIP final response code 400-699")


def _check_grant_timing(s: Settings, prefix: str) -> None:
    """Refuse every slice/heartbeat/margin/warning combination that can cut off a call that
    still has money (the condition and its arithmetic: fsbill.core.grant, funded_call_slack_s)."""
    from fsbill.core.grant import extend_below, funded_call_slack_s

    h, sl, m, w = s.heartbeat_s, s.slice_s, s.cutoff.margin_s, s.cutoff.warning_s
    if funded_call_slack_s(sl, h, m, w) >= 0:
        return
    eb = extend_below(sl, m, w, h)
    need = min(sl, eb) - m - 3
    fixes = []
    least_slice = next(x for x in range(sl, sl + 2 * (h + m + 3) + 3) if funded_call_slack_s(x, h, m, w) >= 0)
    fixes.append(f"slice_s >= {least_slice}")
    most_beat = next((x for x in range(h - 1, 0, -1) if funded_call_slack_s(sl, x, m, w) >= 0), None)
    if most_beat is not None:
        fixes.append(f"heartbeat_s <= {most_beat}")
    raise ConfigError(
        f"{prefix}slice_s: slice_s {sl} with heartbeat_s {h} can cut off calls that still have money: "
        f"only a heartbeat extends a grant, and one must come at least 1 s before the cut-off (margin_s before "
        f"the grant ends, on a whole second) while less than extend_below = max(slice_s // 2, warning_s + "
        f"margin_s + 2 x heartbeat_s) = max({sl // 2}, {w} + {m} + {2 * h}) = {eb} s is left; that needs "
        f"heartbeat_s <= min(slice_s, extend_below) - margin_s - 3 = min({sl}, {eb}) - {m} - 3 = {need}, "
        f"and heartbeat_s is {h}. Use {' or '.join(fixes)}"
    )


def load_settings(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from `path`, else $FSBILL_CONFIG, else defaults; `overrides` win over the file."""
    path = path or os.environ.get("FSBILL_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(
                f"config file {path} is a directory: give the YAML file, e.g. {path}/fsbill.yaml"
            ) from None
        except PermissionError:
            raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping of keys")
        data.update(loaded)
    if overrides:
        data.update({k: v for k, v in overrides.items() if v is not None})
    return _build(Settings, data, "")


__all__ = [
    "ApiConfig",
    "CdrIntake",
    "Charges",
    "Cutoff",
    "DEFAULT_REJECTIONS",
    "MAX_WORKERS",
    "MIN_MARGIN_S",
    "NotifyConfig",
    "PAYPAL_VERIFY_URL",
    "Payments",
    "PaypalConfig",
    "REDACTED",
    "REJECT_REASONS",
    "Rejection",
    "SCHEDULER_LATENESS_S",
    "SECRET",
    "SECRET_URL",
    "STRIPE_TOLERANCE_S",
    "Settings",
    "SmtpConfig",
    "StripeConfig",
    "SwitchConfig",
    "WebhookConfig",
    "load_settings",
    "parse_hostport",
    "printable",
    "redact_url",
    "redact_value",
]
