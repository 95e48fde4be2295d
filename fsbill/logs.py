"""Structured log lines: one per call decision and per settlement, `key=value` or JSON.

`event(log, "settled", uuid=..., cost=Money(...))` renders consistently whichever format the
operator chose (`log_format`); amounts render as their exact strings.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from types import TracebackType
from typing import Any

from fsbill.core.money import Money

_FORMAT = {"json": False}
# a value with whitespace, a quote or an equals sign is written as a JSON string (one regex
# search in C; a per-character generator here cost more than the rest of the line)
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _text(value: Any) -> str:
    if isinstance(value, Money):
        return str(value)
    if value is None:
        return ""
    return str(value)


def event(log: logging.Logger, name: str, **fields: Any) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(render(name, fields))


def render(name: str, fields: dict[str, Any]) -> str:
    if _FORMAT["json"]:
        record = {"event": name}
        record.update({k: _text(v) if isinstance(v, Money) else v for k, v in fields.items()})
        return json.dumps(record, default=str, separators=(",", ":"))
    parts = [f"event={name}"]
    needs_quotes = _NEEDS_QUOTES.search
    for key, value in fields.items():
        text = value if type(value) is str else _text(value)
        if text == "" or needs_quotes(text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime a second, not one a line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = f"{self._stamp}.{int(record.msecs):03d}Z"
        message = record.getMessage()
        if self.as_json:
            if message.startswith("{"):
                body = json.loads(message)
            else:
                body = {"message": message}
            out = {"time": stamp, "level": record.levelname.lower(), "logger": record.name}
            out.update(body)
            if record.exc_info:
                out["exception"] = self.formatException(record.exc_info)
            return json.dumps(out, default=str, separators=(",", ":"))
        line = f"{stamp} level={record.levelname.lower()} logger={record.name} "
        line += message if message.startswith("event=") else f"msg={json.dumps(message)}"
        if record.exc_info:
            # one event per line, whatever the format: the traceback is a quoted field
            line += f" exception={json.dumps(self.formatException(record.exc_info))}"
        return line


def configure(level: str, fmt: str, stream=None) -> None:
    """Route fsbill's logs to stderr in the configured format (called by `fsbill serve`)."""
    _FORMAT["json"] = fmt == "json"
    # What the formatter never writes is not gathered per record (the logging docs'
    # "Optimization" section): the caller's file and line (a stack walk per line), thread,
    # process and asyncio task names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # Python 3.12+; harmless before
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    root = logging.getLogger("fsbill")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # Libraries' warnings (greenswitch, peewee, gevent) in the same format, one line each.
    top = logging.getLogger()
    top.handlers[:] = [handler]
    top.setLevel(logging.WARNING)
    _log_greenlet_errors()


def _log_greenlet_errors() -> None:
    """A greenlet that dies of an exception is reported by gevent's hub, which prints the
    traceback to stderr line by line (gevent/hub.py Hub.print_exception): make it one
    `greenlet_failed` event in the configured format instead."""
    import gevent

    failures = logging.getLogger("fsbill.greenlet")

    def print_exception(
        context: object, kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        failures.error(render("greenlet_failed", {"greenlet": str(context)}), exc_info=(kind, value, tb))

    # The hub calls this attribute; gevent's stubs type it as a method, which may not be replaced.
    gevent.get_hub().print_exception = print_exception  # type: ignore[method-assign,assignment]
