"""Header values straight from the protocol's captured header lines.

PERF: the hot-path lookups (a JWT in the protocol, a ``traceparent``) search the lower-cased
lines for ``"\\nname:"`` with ``bytes.find`` (memchr speed). A case-insensitive, multi-line
regular expression over the same bytes tries every position and cost ~5 µs for a head carrying a
1 KB token.
"""

from __future__ import annotations


def header_values(fwd: list[bytes], name: bytes) -> list[bytes]:
    """The values (spaces and tabs stripped) of header ``name`` (lower-case) in ``fwd``, raw
    header lines (``b"Name: value\\r\\n"`` each, one or several per item), in order."""
    needle = b"\n" + name + b":"
    out: list[bytes] = []
    for part in fwd:
        text = b"\n" + part
        low = text.lower()
        at = low.find(needle)
        while at >= 0:
            start = at + len(needle)
            end = text.find(b"\n", start)
            if end < 0:
                end = len(text)
            out.append(text[start:end].strip(b" \t\r"))
            at = low.find(needle, end)
    return out
