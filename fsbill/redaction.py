"""Secrets never printed: which settings are secret, and how every output hides them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

# -- secrets -----------------------------------------------------------------------------------
# A setting that holds a secret says so in its field's metadata; every place that prints or logs
# settings goes through `printable()` / `redact_url()`, so a secret added later is hidden
# everywhere by marking its field (tests/test_config.py checks that every field named like a
# secret is marked).
SECRET: Mapping[str, str] = {"secret": "value"}  # the whole value is secret (a password)
SECRET_URL: Mapping[str, str] = {"secret": "url"}  # a URL whose password part is secret
REDACTED = "********"
_QUERY_SECRET = re.compile(r"(?i)([?&;](?:ssl)?password=)[^&;#]*")


def redact_url(url: str) -> str:
    """`url` with any password hidden: scheme://user:SECRET@host -> scheme://user:********@host,
    and a `password=` query parameter likewise. Anything else is kept, so the operator still
    sees which database it is."""
    out = url
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            out = f"{scheme}://{creds.split(':', 1)[0]}:{REDACTED}@{host}"
    return _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, out)


def redact_value(value: str) -> str:
    """A secret value as it is shown: empty stays empty (the operator sees it is not set)."""
    return REDACTED if value else ""


def printable(value: Any) -> Any:
    """Settings (or any part of them) as plain YAML/JSON values with every secret hidden: the
    one function used wherever settings are printed or logged."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out = {}
            for f in dataclasses.fields(v):
                item = getattr(v, f.name)
                kind = f.metadata.get("secret")
                key = f.metadata.get("key", f.name)  # the YAML key, when it is not the field's name
                if kind == "value":
                    out[key] = redact_value(item)
                elif kind == "url":
                    out[key] = redact_url(item)
                else:
                    out[key] = plain(item)
            return out
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(value)


__all__ = ["REDACTED", "SECRET", "SECRET_URL", "printable", "redact_url", "redact_value"]
