"""Response-cache keys: golden vectors, canonical order, no aliasing, the request helper.

Every test runs on both builds (``impl``). The golden vectors pin the documented byte format
and hash: a change to either breaks every shared (Redis) cache, so it must be deliberate. The
differential tests feed random input to both builds and to a reference written here from the
format's description, and want identical bytes and identical errors.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw_core import cachekey
from fastgw_core.cachekey import key_hash, parse_key, parse_parameter

from .conftest import IMPLS, NO_EXTENSIONS, require_compiled


@dataclass(frozen=True)
class Impl:
    name: str
    cache_key: Callable[..., bytes]
    KeySpec: type[Any]


PY = Impl("python", cachekey.cache_key_py, cachekey.KeySpecPy)


@pytest.fixture(params=IMPLS, scope="session")
def impl(request: pytest.FixtureRequest) -> Impl:
    """``cache_key`` and ``KeySpec`` of one build."""
    if request.param == "python":
        return PY
    return Impl(
        "compiled",
        require_compiled(cachekey.cache_key_c, "cachekey"),
        require_compiled(cachekey.KeySpecC, "cachekey"),
    )


def all_impls() -> list[Impl]:
    if cachekey.KeySpecC is None:
        if not NO_EXTENSIONS:
            pytest.fail("compiled cachekey is not importable (set FASTGW_NO_EXTENSIONS=1 to skip it)")
        return [PY]
    assert cachekey.cache_key_c is not None
    return [PY, Impl("compiled", cachekey.cache_key_c, cachekey.KeySpecC)]


def lookup(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    """A case-insensitive header lookup like ``Request.header``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get


# -- golden vectors ---------------------------------------------------------------------------

PETS = "/pets/{id}"
JSON = "application/json"
PETS_KEY = b"\x01\x03GET\n/pets/{id}h\x06accept\x01\x10application/jsonp\x02id\x01\x0242q\x04page\x00"

GOLDEN: list[tuple[str, str, list[tuple[str, str, Any]], bytes, int]] = [
    ("GET", "/pets", [], b"\x01\x03GET\x05/pets", 14816281382149425809),
    ("GET", PETS, [("path", "id", "42")], b"\x01\x03GET\n/pets/{id}p\x02id\x01\x0242", 12009851513593071615),
    (
        "GET",
        PETS,
        [("querystring", "page", None), ("header", "Accept", JSON), ("path", "id", "42")],
        PETS_KEY,
        16967983789612586010,
    ),
    # Another order and another header case: the same key.
    (
        "GET",
        PETS,
        [("path", "id", "42"), ("header", "ACCEPT", JSON), ("querystring", "page", ())],
        PETS_KEY,
        16967983789612586010,
    ),
    # Empty (one value of length 0) and missing (no value) differ.
    ("GET", "/x", [("header", "X-A", "")], b"\x01\x03GET\x02/xh\x03x-a\x01\x00", 13856607932375080470),
    ("GET", "/x", [("header", "X-A", None)], b"\x01\x03GET\x02/xh\x03x-a\x00", 9951385002160452825),
    (
        "GET",
        "/x",
        [("querystring", "q", ("a=1", "a=2"))],
        b"\x01\x03GET\x02/xq\x01q\x02\x03a=1\x03a=2",
        14398035455733498335,
    ),
    # UTF-8, and a lone surrogate passed through (surrogatepass).
    (
        "POST",
        "/caf\u00e9",
        [("querystring", "n\u00e9", "\U0001f600"), ("header", "X-S", "\ud800")],
        b"\x01\x04POST\x06/caf\xc3\xa9h\x03x-s\x01\x03\xed\xa0\x80q\x03n\xc3\xa9\x01\x04\xf0\x9f\x98\x80",
        18242997067966841552,
    ),
    # A 200-byte value: two-byte varint length (0xC8 0x01).
    (
        "GET",
        "/l",
        [("header", "x-long", "v" * 200)],
        b"\x01\x03GET\x02/lh\x06x-long\x01\xc8\x01" + b"v" * 200,
        6301372940130872332,
    ),
]


@pytest.mark.parametrize(("method", "resource", "parts", "expected", "h"), GOLDEN)
def test_golden_keys_and_hashes(
    impl: Impl, method: str, resource: str, parts: list[tuple[str, str, Any]], expected: bytes, h: int
) -> None:
    key = impl.cache_key(method, resource, parts)
    assert key == expected
    assert key_hash(key) == h
    # The documented algorithm, spelled out.
    assert h == int.from_bytes(hashlib.blake2b(expected, digest_size=8).digest(), "little")


def test_golden_build(impl: Impl) -> None:
    spec = impl.KeySpec(PETS, [("querystring", "page"), ("header", "Accept"), ("path", "id")])
    key = spec.build(
        "GET", lookup({"Accept": JSON}), "page=2&limit=10&PAGE=3;x=1&p%61ge&pag+e=5", {"id": "42"}
    )
    assert key == (
        b"\x01\x03GET\n/pets/{id}h\x06accept\x01\x10application/jsonp\x02id\x01\x0242"
        b"q\x04page\x03\x06page=2\nPAGE=3;x=1\x06p%61ge"
    )
    assert key_hash(key) == 12299240019077653898
    assert spec.build("GET", lookup({"accept": JSON}), "", {"id": "42"}) == PETS_KEY


def test_build_without_header_getter(impl: Impl) -> None:
    """``header`` None: every header the key reads is absent (the protocol's plain lookup)."""
    spec = impl.KeySpec(PETS, [("header", "Accept"), ("path", "id"), ("header", "authorization")])
    assert spec.build("GET", None, "", {"id": "42"}) == spec.build("GET", lookup({}), "", {"id": "42"})
    assert spec.build("GET", None, "", {"id": "42"}) != spec.build(
        "GET", lookup({"Accept": JSON}), "", {"id": "42"}
    )


def test_key_hash_is_64_bit_and_stable() -> None:
    assert key_hash(b"") == int.from_bytes(hashlib.blake2b(b"", digest_size=8).digest(), "little")
    rng = random.Random(7)
    for _ in range(200):
        h = key_hash(rng.randbytes(rng.randrange(64)))
        assert 0 <= h < 2**64


# -- canonical form and aliasing --------------------------------------------------------------


def test_order_and_header_case_do_not_matter(impl: Impl) -> None:
    parts = [
        ("header", "X-Tenant", "a"),
        ("querystring", "q", "1"),
        ("path", "id", "7"),
        ("header", "Accept", "b"),
    ]
    expected = impl.cache_key("GET", "/r", parts)
    rng = random.Random(1)
    for _ in range(20):
        shuffled = parts[:]
        rng.shuffle(shuffled)
        cased = [(k, n.swapcase() if k == "header" else n, v) for k, n, v in shuffled]
        assert impl.cache_key("GET", "/r", cased) == expected


def test_query_and_path_names_are_case_sensitive(impl: Impl) -> None:
    for kind in ("querystring", "path"):
        assert impl.cache_key("GET", "/", [(kind, "a", "1")]) != impl.cache_key(
            "GET", "/", [(kind, "A", "1")]
        )


def test_kinds_are_distinct(impl: Impl) -> None:
    keys = {impl.cache_key("GET", "/", [(kind, "a", "1")]) for kind in ("header", "path", "querystring")}
    assert len(keys) == 3


def test_method_is_case_sensitive_and_one_value_equals_a_one_tuple(impl: Impl) -> None:
    assert impl.cache_key("GET", "/", []) != impl.cache_key("get", "/", [])
    assert impl.cache_key("GET", "/", [("header", "a", "x")]) == impl.cache_key(
        "GET", "/", [("header", "a", ["x"])]
    )
    assert impl.cache_key("GET", "/", [("header", "a", None)]) == impl.cache_key(
        "GET", "/", [("header", "a", [])]
    )


SEPARATOR_PAIRS = [
    # (parts A, parts B): a value that contains the encoding's own bytes never aliases.
    ([("header", "a", "x\x01h\x01b\x01\x01y")], [("header", "a", "x"), ("header", "b", "y")]),
    ([("header", "a", "\x00")], [("header", "a", None)]),
    ([("header", "a", "")], [("header", "a", None)]),
    ([("querystring", "q", ("a", "b"))], [("querystring", "q", "a\x01b")]),
    ([("querystring", "q", ("ab",))], [("querystring", "q", ("a", "b"))]),
    ([("querystring", "q", ("a&b",))], [("querystring", "q", ("a", "b"))]),
    ([("path", "a", "1"), ("path", "b", "2")], [("path", "a", "1p\x01b\x01\x012")]),
]


@pytest.mark.parametrize(("a", "b"), SEPARATOR_PAIRS)
def test_no_separator_injection(impl: Impl, a: list[Any], b: list[Any]) -> None:
    assert impl.cache_key("GET", "/r", a) != impl.cache_key("GET", "/r", b)


def test_method_resource_boundary(impl: Impl) -> None:
    assert impl.cache_key("GET", "/a", []) != impl.cache_key("GET/", "a", [])
    assert impl.cache_key("GET", "", [("path", "a", "b")]) != impl.cache_key("GET", "p\x01a\x01\x01b", [])


def canonical(method: str, resource: str, parts: Sequence[tuple[str, str, Any]]) -> Any:
    """What a key must encode, written independently of the builds."""
    norm = []
    for kind, name, value in parts:
        if kind == "header":
            name = name.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")
        values = () if value is None else (value,) if isinstance(value, str) else tuple(value)
        norm.append((kind, name, values))
    norm.sort(
        key=lambda p: (
            {"header": 0, "path": 1, "querystring": 2}[p[0]],
            p[1].encode("utf-8", "surrogatepass"),
        )
    )
    return method, resource, norm


TEXT = string.ascii_letters + string.digits + "\x00\x01\x02/=&;%+ \x7f\x80\xe9\u0100\u20ac\U0001f600\ud800"


def random_text(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice(TEXT) for _ in range(rng.randrange(n)))


def random_parts(rng: random.Random) -> list[tuple[str, str, Any]]:
    parts = []
    seen = set()
    for _ in range(rng.randrange(5)):
        kind = rng.choice(["header", "path", "querystring"])
        name = random_text(rng) or "n"
        low = name.encode("utf-8", "surrogatepass")
        ident = (kind, low.lower() if kind == "header" else low)
        if ident in seen:
            continue
        seen.add(ident)
        r = rng.random()
        value: Any = None if r < 0.2 else random_text(rng, 300 if r > 0.95 else 6)
        if 0.5 < r < 0.7:
            value = tuple(random_text(rng) for _ in range(rng.randrange(4)))
        parts.append((kind, name, value))
    return parts


def test_random_inputs_round_trip_and_never_collide() -> None:
    impls = all_impls()
    rng = random.Random(20240601)
    seen: dict[bytes, Any] = {}
    for _ in range(3000):
        method = rng.choice(["GET", "HEAD", "get", random_text(rng)])
        resource = random_text(rng, 12)
        parts = random_parts(rng)
        keys = {i.name: i.cache_key(method, resource, parts) for i in impls}
        key = keys["python"]
        assert set(keys.values()) == {key}, (method, resource, parts)
        canon = canonical(method, resource, parts)
        assert parse_key(key) == canon
        # Injective: a key seen before came from the same canonical input.
        assert seen.setdefault(key, canon) == canon
        assert key_hash(key) == key_hash(bytes(key))


# -- errors -----------------------------------------------------------------------------------

BAD_CALLS: list[tuple[Any, Any, Any, type[Exception]]] = [
    ("GET", "/", [("cookie", "a", "1")], ValueError),
    ("GET", "/", [("Header", "a", "1")], ValueError),
    ("GET", "/", [("header", "", "1")], ValueError),
    ("GET", "/", [("header", "A", "1"), ("header", "a", "2")], ValueError),
    ("GET", "/", [("querystring", "a", "1"), ("querystring", "a", None)], ValueError),
    ("GET", "/", [("header", b"a", "1")], TypeError),
    ("GET", "/", [("header", "a", b"1")], TypeError),
    ("GET", "/", [("header", "a", 1)], TypeError),
    ("GET", "/", [("header", "a", ("1", 2))], TypeError),
    (b"GET", "/", [], TypeError),
    ("GET", None, [], TypeError),
]


@pytest.mark.parametrize(("method", "resource", "parts", "error"), BAD_CALLS)
def test_bad_input_raises(impl: Impl, method: Any, resource: Any, parts: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        impl.cache_key(method, resource, parts)


def test_bad_spec_raises(impl: Impl) -> None:
    with pytest.raises(ValueError, match="given twice"):
        impl.KeySpec("/", [("header", "Accept"), ("header", "accept")])
    with pytest.raises(ValueError, match="kind"):
        impl.KeySpec("/", [("stagevariable", "x")])
    with pytest.raises(ValueError, match="empty"):
        impl.KeySpec("/", [("path", "")])
    with pytest.raises(TypeError):
        impl.KeySpec(None, [])
    spec = impl.KeySpec("/", [("header", "a"), ("path", "p"), ("querystring", "q")])
    with pytest.raises(TypeError):
        spec.build("GET", lambda name: 1, "", None)
    with pytest.raises(TypeError):
        spec.build(None, lookup({}), "", None)
    with pytest.raises(TypeError):
        spec.build("GET", lookup({}), "", {"p": 1})
    with pytest.raises(TypeError):
        spec.build("GET", lookup({}), 5, None)


def test_parse_key_rejects_garbage() -> None:
    for bad in [
        b"",
        b"\x02\x00\x00",
        b"\x01\x05GE",
        b"\x01\x00\x00z\x01a\x00",
        b"\x01\x00\x00h\x01a\x02\x00",
    ]:
        with pytest.raises(ValueError):
            parse_key(bad)


def test_parse_parameter() -> None:
    assert parse_parameter("method.request.header.Accept") == ("header", "Accept")
    assert parse_parameter("method.request.querystring.page") == ("querystring", "page")
    assert parse_parameter("method.request.path.id") == ("path", "id")
    assert parse_parameter("method.request.multivaluequerystring.tag") == ("querystring", "tag")
    assert parse_parameter("method.request.multivalueheader.X-A") == ("header", "X-A")
    assert parse_parameter("method.request.header.a.b") == ("header", "a.b")
    for bad in ["method.request.header.", "method.request.body.x", "header.Accept", "method.request.path"]:
        with pytest.raises(ValueError):
            parse_parameter(bad)


# -- KeySpec.build ----------------------------------------------------------------------------


def test_spec_params_are_canonical(impl: Impl) -> None:
    spec = impl.KeySpec(PETS, [("querystring", "b"), ("header", "X-B"), ("path", "id"), ("header", "Accept")])
    assert spec.resource == PETS
    assert spec.params == (("header", "accept"), ("header", "x-b"), ("path", "id"), ("querystring", "b"))
    assert "KeySpec('/pets/{id}'" in repr(spec)


def test_build_equals_cache_key_of_the_same_values(impl: Impl) -> None:
    spec = impl.KeySpec(PETS, [("header", "Accept"), ("path", "id"), ("header", "X-None"), ("path", "gone")])
    asked: list[str] = []

    def header(name: str) -> str | None:
        asked.append(name)
        return {"accept": JSON}.get(name)

    key = spec.build("GET", header, "", {"id": "42"})
    assert sorted(asked) == ["accept", "x-none"]  # lower-cased names, once each
    assert key == impl.cache_key(
        "GET",
        PETS,
        [
            ("header", "Accept", JSON),
            ("path", "id", "42"),
            ("header", "x-none", None),
            ("path", "gone", None),
        ],
    )
    # No params at all, an empty dict, and any Mapping.
    none = spec.build("GET", lookup({"Accept": JSON}), "", None)
    assert none == spec.build("GET", lookup({"Accept": JSON}), "", {})
    proxy = types.MappingProxyType({"id": "42"})
    assert spec.build("GET", lookup({"Accept": JSON}), "", proxy) == spec.build(
        "GET", lookup({"Accept": JSON}), "", {"id": "42"}
    )


def query_key(impl: Impl, query: str | bytes, names: Sequence[str] = ("page",)) -> list[tuple[str, ...]]:
    spec = impl.KeySpec("/q", [("querystring", n) for n in names])
    key = spec.build("GET", lookup({}), query, None)
    return [values for _, _, values in parse_key(key)[2]]


QUERY_CASES: list[tuple[str, tuple[str, ...]]] = [
    ("", ()),
    ("page=2", ("page=2",)),
    ("page=", ("page=",)),
    ("page", ("page",)),
    ("pages=1&apage=2&page2=3", ()),
    ("a=1&page=2&b=3&page=4", ("page=2", "page=4")),
    ("&&page=2&&", ("page=2",)),
    ("PAGE=1&Page=2", ("PAGE=1", "Page=2")),
    ("p%61ge=1&p%41GE=2&%70%61%67%65=3", ("p%61ge=1", "p%41GE=2", "%70%61%67%65=3")),
    ("p%6=1&page%=2&pa%ge=3", ()),
    ("a=1;page=2", ("a=1;page=2",)),
    ("page=1;page=2", ("page=1;page=2",)),
    ("a=x;y&b=page;c", ()),
    ("x=page=1", ()),
    ("page=a=b", ("page=a=b",)),
    ("=page", ()),
]


@pytest.mark.parametrize(("query", "values"), QUERY_CASES)
def test_query_values(impl: Impl, query: str, values: tuple[str, ...]) -> None:
    assert query_key(impl, query) == [values]
    assert query_key(impl, query.encode("latin-1")) == [values]


def test_query_loose_names_plus_and_space(impl: Impl) -> None:
    assert query_key(impl, "a+b=1&a%20b=2&a%2Bb=3&a%2bb=4&a b=5&ab=6", ["a b"]) == [
        ("a+b=1", "a%20b=2", "a%2Bb=3", "a%2bb=4", "a b=5")
    ]
    assert query_key(impl, "a+b=1&a%20b=2&a%2Bb=3", ["a+b"]) == [("a+b=1", "a%20b=2", "a%2Bb=3")]


def test_query_several_params_share_pieces(impl: Impl) -> None:
    got = query_key(impl, "a=1;b=2&b=3&c=4&A=5", ["a", "b", "c", "d"])
    assert got == [("a=1;b=2", "A=5"), ("a=1;b=2", "b=3"), ("c=4",), ()]
    # Two declared names that are loosely equal both get the piece.
    assert query_key(impl, "x=1", ["x", "X"]) == [("x=1",), ("x=1",)]


def test_query_non_ascii(impl: Impl) -> None:
    # An ASCII query (the compiled build's C scan) naming a non-ASCII parameter in UTF-8 escapes.
    assert query_key(impl, "caf%C3%A9=2&CAF%c3%a9=3&caf%E9=4&cafe=5", ["caf\u00e9"]) == [
        ("caf%C3%A9=2", "CAF%c3%a9=3")
    ]
    # The protocol decodes the request line as latin-1: "é" arrives as "\xc3\xa9".
    assert query_key(impl, "caf\xc3\xa9=1&caf%C3%A9=2&CAF\xc3\xa9=3&caf\xe9=4", ["caf\u00e9"]) == [
        ("caf\xc3\xa9=1", "caf%C3%A9=2", "CAF\xc3\xa9=3")
    ]
    assert query_key(impl, b"caf\xc3\xa9=1&page=\xff", ["caf\u00e9", "page"]) == [
        ("caf\xc3\xa9=1",),
        ("page=\xff",),
    ]
    assert query_key(impl, "page=\u20ac&page=\ud800&x=\U0001f600", ["page"]) == [
        ("page=\u20ac", "page=\ud800")
    ]
    assert query_key(impl, "\u0100=1&%C4%80=2", ["\u0100"]) == [("\u0100=1", "%C4%80=2")]


def test_query_limits_take_the_python_path(impl: Impl) -> None:
    many = [f"p{i}" for i in range(70)]
    query = "&".join(f"P{i}={i}" for i in range(0, 70, 3))
    got = query_key(impl, query, many)
    assert got == query_key(PY, query, many)
    assert got[sorted(many).index("p3")] == ("P3=3",)  # canonical order: by name bytes
    pieces = "&".join(["page=1"] * 100)
    assert query_key(impl, pieces) == [("page=1",) * 100]
    long_name = "n" * 300
    assert query_key(impl, f"{long_name.upper()}=1&x=2", [long_name]) == [(f"{long_name.upper()}=1",)]
    long_piece = "page=" + "v" * 1000
    assert query_key(impl, long_piece) == [(long_piece,)]


# -- differential -----------------------------------------------------------------------------

_HEX = re.compile(rb"%([0-9A-Fa-f]{2})")


def ref_loose(raw: str) -> bytes:
    data = b"".join(bytes((ord(c),)) if ord(c) < 0x100 else c.encode("utf-8", "surrogatepass") for c in raw)
    data = _HEX.sub(lambda m: bytes((int(m.group(1), 16),)), data)
    return data.replace(b"+", b" ").lower()


def ref_query_values(query: str, name: str) -> tuple[str, ...]:
    """The reference of the query rule, from its description."""
    want = name.encode("utf-8", "surrogatepass").replace(b"+", b" ").lower()
    out = []
    for piece in query.split("&"):
        if piece and any(ref_loose(sub.split("=", 1)[0]) == want for sub in piece.split(";")):
            out.append(piece)
    return tuple(out)


QUERY_ALPHABET = "aAbB=&;%+ 2fF0\xe9\xc3\u20ac"


def random_query(rng: random.Random) -> str:
    return "".join(rng.choice(QUERY_ALPHABET) for _ in range(rng.randrange(30)))


def check_build(impls: list[Impl], method: str, parts: list[tuple[str, str, Any]], query: str) -> None:
    params = [(k, n) for k, n, _ in parts]
    headers = {n.lower(): v for k, n, v in parts if k == "header" and isinstance(v, str)}
    path = {n: v for k, n, v in parts if k == "path" and isinstance(v, str)}
    expected = PY.cache_key(
        method,
        "/r",
        [
            (
                k,
                n,
                ref_query_values(query, n)
                if k == "querystring"
                else headers.get(n.lower())
                if k == "header"
                else path.get(n),
            )
            for k, n, _ in parts
        ],
    )
    for i in impls:
        spec = i.KeySpec("/r", params)
        assert spec.build(method, headers.get, query, path) == expected, (i.name, parts, query)
        assert spec.build(method, headers.get, query.encode("latin-1", "replace"), path) == spec.build(
            method, headers.get, query.encode("latin-1", "replace").decode("latin-1"), path
        )


def test_random_builds_match_the_reference() -> None:
    impls = all_impls()
    rng = random.Random(99)
    names = ["a", "A", "b", "a b", "a+b", "\xe9", "B%41"]
    for _ in range(3000):
        parts: list[tuple[str, str, Any]] = []
        used = set()
        for _ in range(rng.randrange(5)):
            kind = rng.choice(["header", "path", "querystring", "querystring"])
            name = rng.choice(names)
            ident = (kind, name.lower() if kind == "header" else name)
            if ident in used:
                continue
            used.add(ident)
            parts.append((kind, name, rng.choice([None, "", "v", "\u20ac", "x;y&z"])))
        check_build(impls, rng.choice(["GET", "HEAD"]), parts, random_query(rng))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.text(max_size=8),
    resource=st.text(max_size=20),
    parts=st.lists(
        st.tuples(
            st.sampled_from(["header", "path", "querystring"]),
            st.text(min_size=1, max_size=6),
            st.none() | st.text(max_size=10) | st.lists(st.text(max_size=5), max_size=3),
        ),
        max_size=5,
        unique_by=lambda p: (
            p[0],
            p[1].encode("utf-8", "surrogatepass").lower() if p[0] == "header" else p[1],
        ),
    ),
)
def test_hypothesis_builds_agree(method: str, resource: str, parts: list[tuple[str, str, Any]]) -> None:
    impls = all_impls()
    keys = {i.cache_key(method, resource, parts) for i in impls}
    assert len(keys) == 1
    assert parse_key(keys.pop()) == canonical(method, resource, parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=st.text(alphabet=st.sampled_from([*QUERY_ALPHABET, "\U0001f600"]), max_size=40),
    names=st.lists(st.sampled_from(["a", "A", "b", "a b", "a+b", "\xe9", "%"]), max_size=4, unique=True),
)
def test_hypothesis_query_matches_reference(query: str, names: list[str]) -> None:
    for i in all_impls():
        ordered = [n for _, n in i.KeySpec("/q", [("querystring", n) for n in names]).params]
        assert query_key(i, query, names) == [ref_query_values(query, n) for n in ordered]


# -- the compiled build leaks nothing -----------------------------------------------------------


def test_build_keeps_refcounts(impl: Impl) -> None:
    spec = impl.KeySpec(PETS, [("header", "Accept"), ("path", "id"), ("querystring", "page")])
    accept = "".join(["application/", "json"])
    ident = "".join(["4", "2"])
    query = "".join(["page=2&x=1", ""])
    method = "".join(["G", "ET"])
    headers = {"accept": accept}
    params = {"id": ident}
    before = [sys.getrefcount(o) for o in (accept, ident, query, method, spec)]
    for _ in range(1000):
        spec.build(method, headers.get, query, params)
    after = [sys.getrefcount(o) for o in (accept, ident, query, method, spec)]
    assert before == after
