"""Response-cache keys, pure-Python build (the specification).

A cache key names one cacheable response: the request method, the route's resource (the
template the caller chooses, e.g. ``/pets/{id}``) and the values of the method's declared
cache-key parameters (AWS ``cacheKeyParameters``). ``cache_key`` encodes explicit values;
``KeySpec`` is prepared once per route and ``KeySpec.build`` reads the values from a request.
``parse_key`` reads a key back (tests, admin tooling; not hot).

Byte format (version 1); every string is UTF-8 with surrogates passed through
(``str.encode("utf-8", "surrogatepass")``), so the encoding is injective::

    key    = 0x01 field(method) field(resource) param*
    param  = kind field(name) count field{count}
    kind   = 0x68 "h" header | 0x70 "p" path | 0x71 "q" querystring
    count  = varint: how many values; 0 = the parameter is missing
    field  = varint(len(utf8)) utf8
    varint = unsigned LEB128 (7 bits a byte, low group first, high bit = more)

Every part is length-prefixed, so no value can forge a separator and two different inputs
never give the same key: ``parse_key`` recovers the canonical input from the bytes. A missing
parameter (count 0) differs from an empty one (count 1, field of length 0). Header names are
case-insensitive: they are ASCII lower-cased (``bytes.lower``) before anything else; query and
path parameter names are kept as given. Parameters are sorted by (kind byte, name bytes), so
the order in which they are declared or given does not matter; a (kind, name) given twice is a
``ValueError``. The method is kept as given (methods are case-sensitive).

Values, as ``KeySpec.build`` reads them from a request:

- ``header``: ``header(name)`` with the lower-cased name, one value, or missing on ``None``.
  The lookup is case-insensitive and joins repeated headers with "," (``Request.header``).
- ``path``: ``path_params.get(name)`` (the router's params), one value, or missing.
- ``querystring``: the raw query (not decoded) is split on "&"; every piece that names the
  parameter is a value, verbatim (``"page=2"``, ``"p%61ge=2"``), in request order; none =
  missing. A piece names the parameter when, for one of its ";"-separated parts, the text
  before the first "=" matches the name *loosely*: percent-decoded (``%XX`` with two hex
  digits; any other "%" is literal), then "+" and " " alike, ASCII case ignored (the name's
  characters below U+0100 are taken as the bytes they stand for, as the protocol decodes the
  request line as latin-1; others as their UTF-8 bytes).

  NOTE: AWS keys on the decoded parameter value. fastgw forwards the raw query to HTTP
  upstreams, so it keys on the raw pieces instead: two spellings of one value
  (``q=a%20b`` / ``q=a+b``) are two entries (fewer hits, never a wrong one), and percent
  decoding, which is not injective on invalid UTF-8, cannot merge two different requests.
  APPSEC: the loose match and the ";" split are deliberate over-approximations against
  parameter cloaking (web cache poisoning): whatever an upstream parser might read as the
  parameter (a repeated name, another case, an encoded name, a ";" separator) is in the key,
  and since whole raw pieces are recorded, two requests that some parser could read
  differently never share a key. A value-less piece (``flag``) and an empty one (``flag=``)
  are different values.

``key_hash`` is blake2b with an 8-byte digest over the key, read as an unsigned little-endian
64-bit integer (``hashlib.blake2b(key, digest_size=8)``); both builds use it as is. It names
and shards entries in Redis; stores compare the full key, so a collision is a miss.
"""

from collections.abc import Callable, Mapping, Sequence
from hashlib import blake2b
from itertools import pairwise
from urllib.parse import unquote_to_bytes

__all__ = [
    "KEY_VERSION",
    "KINDS",
    "KeySpec",
    "cache_key",
    "key_hash",
    "parse_key",
    "parse_parameter",
]

KEY_VERSION = 1
KINDS: tuple[str, ...] = ("header", "path", "querystring")

_KIND_CODE = {"header": 0x68, "path": 0x70, "querystring": 0x71}
_CODE_KIND = {v: k for k, v in _KIND_CODE.items()}
_HEADER, _PATH, _QUERY = 0x68, 0x70, 0x71
_VERSION_BYTE = b"\x01"
_MISSING = b"\x00"
_ONE = b"\x01"
# varint(n) for n < 128: one byte.
_VARINT1: tuple[bytes, ...] = tuple(bytes((n,)) for n in range(128))
# AWS cacheKeyParameters kinds; the multi-value ones read the same values here (see above).
_AWS_KINDS = {
    "header": "header",
    "multivalueheader": "header",
    "querystring": "querystring",
    "multivaluequerystring": "querystring",
    "path": "path",
}

Value = str | Sequence[str] | None


def varint(n: int) -> bytes:
    """Unsigned LEB128 of ``n`` (>= 0)."""
    if n < 128:
        return _VARINT1[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _utf8(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be str, not {type(s).__name__}")
    return s.encode("utf-8", "surrogatepass")


def _field(s: str, what: str = "value") -> bytes:
    b = _utf8(s, what)
    n = len(b)
    return (_VARINT1[n] + b) if n < 128 else varint(n) + b


def _values(value: Value) -> bytes:
    """count + fields of one parameter's value(s)."""
    if value is None:
        return _MISSING
    if isinstance(value, str):
        return _ONE + _field(value)
    if isinstance(value, bytes | bytearray | memoryview) or not isinstance(value, Sequence):
        raise TypeError(
            f"a parameter value must be str, a sequence of str or None, not {type(value).__name__}"
        )
    n = len(value)
    if n == 0:
        return _MISSING
    return varint(n) + b"".join([_field(v) for v in value])


def _name_bytes(kind: str, name: str) -> tuple[int, bytes]:
    code = _KIND_CODE.get(kind) if type(kind) is str else None
    if code is None:
        raise ValueError(f"unknown cache key parameter kind {kind!r} (header, path or querystring)")
    nb = _utf8(name, "a parameter name")
    if not nb:
        raise ValueError(f"empty {kind} parameter name")
    if code == _HEADER:
        nb = nb.lower()  # ASCII only
    return code, nb


def _canonical(params: Sequence[tuple[str, str]]) -> list[tuple[int, bytes, int]]:
    """(kind code, name bytes, position in ``params``) sorted; duplicates raise ValueError."""
    items = []
    for i, param in enumerate(params):
        kind, name = param
        code, nb = _name_bytes(kind, name)
        items.append((code, nb, i))
    items.sort()
    for a, b in pairwise(items):
        if a[0] == b[0] and a[1] == b[1]:
            raise ValueError(
                f"cache key parameter {_CODE_KIND[a[0]]} {a[1].decode('utf-8', 'surrogatepass')!r} "
                "given twice"
            )
    return items


def _param_prefix(code: int, nb: bytes) -> bytes:
    n = len(nb)
    return bytes((code,)) + (_VARINT1[n] if n < 128 else varint(n)) + nb


def cache_key(method: str, resource: str, parts: Sequence[tuple[str, str, Value]]) -> bytes:
    """The key of ``method`` + ``resource`` + the parameters ``(kind, name, value)``.

    ``value`` is a str (one value), ``None`` (missing) or a sequence of str (several values, in
    order; empty = missing; one = the same as the str). See the module docstring.
    """
    head = _VERSION_BYTE + _field(method, "method") + _field(resource, "resource")
    if not parts:
        return head
    order = _canonical([(p[0], p[1]) for p in parts])
    out = [head]
    for code, nb, i in order:
        out.append(_param_prefix(code, nb))
        out.append(_values(parts[i][2]))
    return b"".join(out)


def key_hash(key: bytes) -> int:
    """blake2b-64 of the key, little-endian unsigned (0 <= h < 2**64)."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "little")


# -- query scanning -------------------------------------------------------------------------


def _raw_bytes(text: str) -> bytes:
    """Characters below U+0100 as the bytes they stand for, others as UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return b"".join(
            [c.encode("latin-1") if ord(c) < 0x100 else c.encode("utf-8", "surrogatepass") for c in text]
        )


def loose_name(raw: str) -> str:
    """The loose form of a raw query parameter name (a latin-1 str of its bytes)."""
    if "%" not in raw and "+" not in raw and raw.isascii():
        return raw.lower()
    return unquote_to_bytes(_raw_bytes(raw)).replace(b"+", b" ").lower().decode("latin-1")


def declared_loose(name: str) -> str:
    """The loose form of a declared query parameter name (not percent-decoded)."""
    return name.encode("utf-8", "surrogatepass").replace(b"+", b" ").lower().decode("latin-1")


def query_values(query: str | bytes, wanted: Mapping[str, Sequence[int]], nq: int) -> list[list[str]] | None:
    """For each of ``nq`` parameters, the raw pieces of ``query`` that name it (see above).

    ``wanted`` maps a loose name to the parameters (0 .. nq-1) it stands for. None when no
    piece names any. ``bytes`` are read as latin-1.
    """
    if type(query) is not str:
        if isinstance(query, bytes | bytearray):
            query = bytes(query).decode("latin-1")
        elif not isinstance(query, str):
            raise TypeError(f"query must be str or bytes, not {type(query).__name__}")
    found: list[list[str]] | None = None
    pieces = query.split("&")
    # PERF: a plain query (ASCII, no "%" or "+") is lower-cased once; its loose names are
    # then the lower-cased names themselves.
    plain = query.isascii() and "%" not in query and "+" not in query
    names = query.lower().split("&") if plain else pieces
    for k in range(len(pieces)):
        piece = pieces[k]
        if not piece:
            continue
        lowered = names[k]
        if ";" not in piece:
            name = lowered.partition("=")[0]
            hits = wanted.get(name if plain else loose_name(name))
            if hits is None:
                continue
        else:
            seen: set[int] = set()
            for sub in lowered.split(";"):
                name = sub.partition("=")[0]
                h = wanted.get(name if plain else loose_name(name))
                if h is not None:
                    seen.update(h)
            if not seen:
                continue
            hits = sorted(seen)
        if found is None:
            found = [[] for _ in range(nq)]
        for i in hits:
            found[i].append(piece)
    return found


class KeySpec:
    """A route's key recipe, prepared once: ``build`` makes the key of one request.

    ``params`` are ``(kind, name)`` pairs; ``KeySpec.params`` keeps them in canonical order
    (header names lower-cased). See the module docstring for where values come from.
    """

    __slots__ = ("_nq", "_qwanted", "_resource_field", "_steps", "params", "resource")

    def __init__(self, resource: str, params: Sequence[tuple[str, str]] = ()) -> None:
        self._resource_field = _field(resource, "resource")
        self.resource = resource
        order = _canonical(params)
        steps = []
        qwanted: dict[str, list[int]] = {}
        canon = []
        nq = 0
        for code, nb, _ in order:
            name = nb.decode("utf-8", "surrogatepass")
            canon.append((_CODE_KIND[code], name))
            slot = -1
            if code == _QUERY:
                slot = nq
                nq += 1
                qwanted.setdefault(declared_loose(name), []).append(slot)
            steps.append((code, _param_prefix(code, nb), name, slot))
        self._steps: tuple[tuple[int, bytes, str, int], ...] = tuple(steps)
        self._qwanted: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in qwanted.items()}
        self._nq = nq
        self.params: tuple[tuple[str, str], ...] = tuple(canon)

    def build(
        self,
        method: str,
        header: Callable[[str], str | None] | None,
        query: str | bytes,
        path_params: Mapping[str, str] | None,
    ) -> bytes:
        """The key of one request: ``header(lower_name)`` looks a header up (case-insensitive,
        ``None`` when absent; ``header`` None: no header the key reads is present), ``query``
        is the raw query string (no "?", not decoded; bytes read as latin-1), ``path_params``
        the router's params (or None)."""
        out = [_VERSION_BYTE, _field(method, "method"), self._resource_field]
        qvals = query_values(query, self._qwanted, self._nq) if self._nq and query else None
        for code, prefix, name, slot in self._steps:
            out.append(prefix)
            if code == _HEADER:
                v = header(name) if header is not None else None
            elif code == _PATH:
                v = path_params.get(name) if path_params else None
            else:
                if qvals is None:
                    out.append(_MISSING)
                    continue
                pieces = qvals[slot]
                n = len(pieces)
                if n == 0:
                    out.append(_MISSING)
                    continue
                out.append(_VARINT1[n] if n < 128 else varint(n))
                for p in pieces:
                    out.append(_field(p))
                continue
            if v is None:
                out.append(_MISSING)
            else:
                out.append(_ONE)
                out.append(_field(v))
        return b"".join(out)

    def __repr__(self) -> str:
        return f"KeySpec({self.resource!r}, {list(self.params)!r})"


# -- reading keys back ----------------------------------------------------------------------


def _read_varint(key: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(key):
            raise ValueError("truncated cache key")
        b = key[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7


def _read_field(key: bytes, i: int) -> tuple[str, int]:
    n, i = _read_varint(key, i)
    if i + n > len(key):
        raise ValueError("truncated cache key")
    return key[i : i + n].decode("utf-8", "surrogatepass"), i + n


def parse_key(key: bytes) -> tuple[str, str, list[tuple[str, str, tuple[str, ...]]]]:
    """``(method, resource, [(kind, name, values), ...])`` of a key; ValueError if malformed."""
    if key[:1] != _VERSION_BYTE:
        raise ValueError("not a version 1 cache key")
    method, i = _read_field(key, 1)
    resource, i = _read_field(key, i)
    params = []
    while i < len(key):
        kind = _CODE_KIND.get(key[i])
        if kind is None:
            raise ValueError(f"unknown parameter kind byte {key[i]:#x} at offset {i}")
        name, i = _read_field(key, i + 1)
        count, i = _read_varint(key, i)
        values = []
        for _ in range(count):
            v, i = _read_field(key, i)
            values.append(v)
        params.append((kind, name, tuple(values)))
    return method, resource, params


def parse_parameter(text: str) -> tuple[str, str]:
    """``"method.request.header.Accept"`` -> ``("header", "Accept")`` (AWS cacheKeyParameters).

    ``multivalueheader`` and ``multivaluequerystring`` give ``header`` and ``querystring``, which
    already key on every value. ValueError for anything else.
    """
    prefix = "method.request."
    if text.startswith(prefix):
        kind, dot, name = text[len(prefix) :].partition(".")
        mapped = _AWS_KINDS.get(kind)
        if mapped is not None and dot and name:
            return mapped, name
    raise ValueError(
        f"bad cache key parameter {text!r}: expected method.request.header|querystring|path.NAME"
    )
