"""Request-path normalisation, pure-Python build (the specification).

``normalize_path`` turns the path of an origin-form request target into the single normal
form that fastgw both routes on and forwards upstream. Routing and forwarding on the same
string closes the classic bypasses where a proxy and its backend disagree about a path
(``/a/%2e%2e/admin``, ``//admin``, ``/admin%2fx``).

The rules, applied in this order (the compiled build ``_urlnorm_c`` follows them exactly,
including which error is reported first and its message):

1. The path must start with ``/``.
2. No raw byte may be a control character, a space, DEL or non-ASCII (<= 0x20, 0x7F,
   >= 0x80): clients must percent-encode them. The first such character is reported.
3. Percent-escapes are read left to right. A truncated escape or a non-hex digit is an
   error, and so is ``%00``. An escape of an unreserved character (ALPHA / DIGIT / ``-`` /
   ``.`` / ``_`` / ``~``) is decoded; any other escape is kept, with upper-case hex digits, so
   ``%2f`` becomes ``%2F`` and stays inside its segment.
4. Empty segments collapse (``//`` -> ``/``) and dot segments are removed as in RFC 3986
   section 5.2.4 (``.`` disappears, ``..`` removes the previous segment and never climbs
   above the root). The result ends with ``/`` when the input's last segment was empty
   (a trailing slash) or a dot segment.

The fast path returns ``raw`` itself when it contains no ``%``, no ``//`` and no ``/.``.
"""

import re

from fastgw_core.errors import InvalidPathError

__all__ = ["normalize_path"]

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
# Everything a client must percent-encode: C0 controls, space, DEL and all non-ASCII.
_BAD_CHAR = re.compile("[\x00-\x20\x7f-\U0010ffff]")


def _invalid_char(raw: str, i: int) -> InvalidPathError:
    return InvalidPathError(f"invalid character {raw[i]!r} at offset {i} in path (must be percent-encoded)")


def _decode_escapes(raw: str) -> str:
    """Apply rule 3: decode escapes of unreserved characters, upper-case the others."""
    out: list[str] = []
    start = 0
    i = raw.find("%")
    while i != -1:
        hexpair = raw[i + 1 : i + 3]
        if len(hexpair) < 2:
            raise InvalidPathError(f"truncated percent-escape {raw[i:]!r} at offset {i} in path")
        if hexpair[0] not in _HEXDIGITS or hexpair[1] not in _HEXDIGITS:
            raise InvalidPathError(f"invalid percent-escape {raw[i : i + 3]!r} at offset {i} in path")
        ch = chr(int(hexpair, 16))
        if ch == "\x00":
            raise InvalidPathError(f"percent-encoded NUL at offset {i} in path")
        out.append(raw[start:i])
        out.append(ch if ch in _UNRESERVED else "%" + hexpair.upper())
        start = i + 3
        i = raw.find("%", start)
    out.append(raw[start:])
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """Apply rule 4 to a path that starts with '/'."""
    kept: list[str] = []
    trailing_slash = False
    for segment in path[1:].split("/"):
        if segment == "..":
            if kept:
                kept.pop()
            trailing_slash = True
        elif segment in ("", "."):
            trailing_slash = True
        else:
            kept.append(segment)
            trailing_slash = False
    if not kept:
        return "/"
    return "/" + "/".join(kept) + ("/" if trailing_slash else "")


def normalize_path(raw: str) -> str:
    """Return the normal form of the request path ``raw``; raise ``InvalidPathError``."""
    if not raw.startswith("/"):
        raise InvalidPathError(f"path must start with '/': {raw[:64]!r}")
    # PERF: str.isascii() is O(1) and isprintable() a C loop; printable ASCII is 0x20-0x7E.
    if not (raw.isascii() and raw.isprintable()) or " " in raw:
        bad = _BAD_CHAR.search(raw)
        assert bad is not None
        raise _invalid_char(raw, bad.start())
    has_escapes = "%" in raw
    if not has_escapes and "//" not in raw and "/." not in raw:
        return raw  # fast path: already in normal form, no allocation
    # APPSEC: escapes are decoded *before* dot segments are resolved, so "%2e%2e" is "..".
    decoded = _decode_escapes(raw) if has_escapes else raw
    return _remove_dot_segments(decoded)
