"""Header values straight from the protocol's captured header lines.

PERF: the hot-path lookups (a JWT in the protocol, a ``traceparent``) search the lower-cased
lines for ``"\\nname:"`` with ``bytes.find`` (memchr speed). A case-insensitive, multi-line
regular expression over the same bytes tries every position and cost ~5 µs for a head carrying a
1 KB token.
"""

from __future__ import annotations


def values_in(text: bytes, low: bytes, name: bytes) -> list[bytes]:
    """The values (spaces, tabs and CR stripped) of header ``name`` (lower-case) in ``text``,
    header lines that start after a newline (``b"\\n"`` or ``b"\\r\\n"`` first), ``low`` being
    ``text.lower()`` (made once by a caller that looks up several names)."""
    needle = b"\n" + name + b":"
    out: list[bytes] = []
    at = low.find(needle)
    while at >= 0:
        start = at + len(needle)
        end = text.find(b"\n", start)
        if end < 0:
            end = len(text)
        out.append(text[start:end].strip(b" \t\r"))
        at = low.find(needle, end)
    return out


def header_values(fwd: list[bytes], name: bytes) -> list[bytes]:
    """The values (spaces and tabs stripped) of header ``name`` (lower-case) in ``fwd``, raw
    header lines (``b"Name: value\\r\\n"`` each, one or several per item), in order."""
    out: list[bytes] = []
    for part in fwd:
        text = b"\n" + part
        out += values_in(text, text.lower(), name)
    return out
