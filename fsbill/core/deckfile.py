"""A deck file's bytes as text lines in a chosen encoding, refusing the first line that is not
valid in it by its number. Pure: it reads the binary stream it is given, nothing else.

Carriers send decks in UTF-8, Windows-1252 ('cp1252') or ISO-8859-1 ('latin-1'). A wrong
guess must not import silently garbled descriptions, nor fail with a byte offset nobody can
find: the refusal names the line (counted as the CSV reader counts them) and the column.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import Protocol

from fsbill.errors import InvalidInput, RateDeckError

DEFAULT_ENCODING = "utf-8"
CHUNK_BYTES = 1 << 20
_BOM = codecs.BOM_UTF8
_PROBE = "prefix,rate;|\t\r\n0123456789+-.:\"'"


class BinaryReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def check_encoding(name: str) -> str:
    """The codec's canonical name, or InvalidInput: unknown, or not ASCII-compatible (UTF-16
    and UTF-32 decks must be converted: their line breaks are not the bytes split on here)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise InvalidInput(f"unknown encoding {name!r} (common for decks: utf-8, cp1252, latin-1)") from None
    try:
        compatible = _PROBE.encode(info.name) == _PROBE.encode("ascii")
    except (UnicodeError, LookupError):
        compatible = False
    if not compatible:
        raise InvalidInput(f"encoding {name!r} is not ASCII-compatible; convert the deck to UTF-8 first")
    return info.name


def _breaks(data: bytes) -> int:
    """Line breaks in `data` as universal newlines count them ('\\r\\n' is one)."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def decode_lines(source: BinaryReader, encoding: str = DEFAULT_ENCODING) -> Iterator[str]:
    """The text lines of `source` (line ends kept, split at '\\n', '\\r' or '\\r\\n' like a file
    opened with newline=''). A UTF-8 byte order mark is dropped. Bytes invalid in `encoding`
    raise RateDeckError naming their line, after every line before it has been yielded (so a
    parser still reports an earlier bad line first)."""
    codec = check_encoding(encoding)
    line = 1  # the number of the next line to yield
    pending = b""
    first = True
    while True:
        chunk = source.read(CHUNK_BYTES)
        if chunk:
            data = pending + chunk if pending else chunk
            cut = data.rfind(b"\n") + 1  # never between '\r' and '\n'
            if cut == 0:
                pending = data
                continue
            piece, pending = data[:cut], data[cut:]
        else:
            piece, pending = pending, b""
            if not piece:
                return
        if first:
            first = False
            if codec == "utf-8" and piece.startswith(_BOM):
                piece = piece[len(_BOM) :]
        try:
            text = piece.decode(codec)
        except UnicodeDecodeError as exc:
            good = max(piece.rfind(b"\n", 0, exc.start), piece.rfind(b"\r", 0, exc.start)) + 1
            yield from io.StringIO(piece[:good].decode(codec), newline="")
            bad_line = line + _breaks(piece[:good])
            raise RateDeckError(
                bad_line,
                f"not valid {encoding} text: byte 0x{piece[exc.start]:02x} at byte {exc.start - good + 1} of the "
                "line; give the deck's encoding with --encoding (cp1252 and latin-1 are common)",
            ) from None
        for text_line in io.StringIO(text, newline=""):
            yield text_line
            line += 1
        if not chunk:
            return


__all__ = ["CHUNK_BYTES", "DEFAULT_ENCODING", "check_encoding", "decode_lines"]
