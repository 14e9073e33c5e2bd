"""Hypothesis: the compiled build == the Python build == a slow reference, on generated input.

The reference matcher below shares no code with either build: it enumerates every route,
keeps those whose template matches the path and whose method fits, and picks the most
specific by a sort key. Both builds must agree with it, and with each other on errors
(type and message).
"""

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw_core import router, urlnorm
from fastgw_core.errors import InvalidPathError, RouteError

from .conftest import NO_EXTENSIONS

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_LITERAL, _PARAM, _GREEDY = 0, 1, 2


def _builds(py: Any, c: Any) -> list[Any]:
    """The Python and, when available, compiled object; a missing extension is a failure."""
    if c is None and not NO_EXTENSIONS:
        pytest.fail("compiled extension is not importable (set FASTGW_NO_EXTENSIONS=1 to skip it)")
    return [py] if c is None else [py, c]


# -- the reference matcher ---------------------------------------------------------------


class ReferenceRouter:
    """Linear scan over all routes; the best match has the smallest specificity key."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, str, object]] = []
        self.default: object | None = None
        self.has_default = False

    def add(self, method: str, template: str, value: object) -> None:
        self.routes.append((method, template, value))

    def set_default(self, value: object) -> None:
        self.default, self.has_default = value, True

    @staticmethod
    def _segments(template: str) -> list[tuple[int, str]]:
        out = []
        for text in template.strip("/").split("/") if template != "/" else []:
            if text.endswith("+}"):
                out.append((_GREEDY, text[1:-2]))
            elif text.startswith("{"):
                out.append((_PARAM, text[1:-1]))
            else:
                out.append((_LITERAL, text))
        return out

    @staticmethod
    def _bind(segments: list[tuple[int, str]], path: str) -> dict[str, str] | None:
        """The params if the template segments match the whole path, else None."""
        body = path[1:]
        trailing = body.endswith("/")
        parts = body[:-1].split("/") if trailing else (body.split("/") if body else [])
        if body == "/":  # only for non-normalised input; not generated
            parts = [""]
        params: dict[str, str] = {}
        for i, (kind, text) in enumerate(segments):
            if kind == _GREEDY:
                if i >= len(parts):
                    return None
                params[text] = "/".join(parts[i:]) + ("/" if trailing else "")
                return params
            if i >= len(parts):
                return None
            if kind == _LITERAL and parts[i] != text:
                return None
            if kind == _PARAM:
                if not parts[i]:
                    return None
                params[text] = parts[i]
        return params if len(segments) == len(parts) else None

    def match(self, method: str, path: str) -> tuple[object, str, str, dict[str, str]] | None:
        candidates = []
        for route_method, template, value in self.routes:
            if route_method not in (method, "ANY"):
                continue
            segments = self._segments(template)
            params = self._bind(segments, path)
            if params is None:
                continue
            # Depth-first, literal < param < greedy at each depth, then exact method < ANY.
            key = (tuple(kind for kind, _ in segments), route_method == "ANY")
            candidates.append((key, (value, route_method, template, params)))
        if candidates:
            return min(candidates, key=lambda c: c[0])[1]
        if self.has_default:
            return (self.default, "ANY", "$default", {})
        return None


def _outcome(trie: Any, method: str, path: str) -> tuple[object, str, str, dict[str, str]] | None:
    m = trie.match(method, path)
    return None if m is None else (m.value, m.method, m.template, m.params)


# -- strategies --------------------------------------------------------------------------

METHODS = ["GET", "POST", "ANY"]
literal = st.sampled_from(["a", "b", "c", "ab", "%2F"])
template_segment = st.one_of(
    literal,
    literal,
    st.sampled_from(["{x}", "{y}", "{z}"]),
    st.sampled_from(["{g+}", "{h+}", "{x+}"]),
    st.sampled_from(["", "a{b}", "{bad name}", "."]),  # invalid: must fail in both builds
)
template = st.lists(template_segment, max_size=4).map(lambda segs: "/" + "/".join(segs))
route = st.tuples(st.sampled_from([*METHODS, "get"]), template)
path = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash and segs else ""),
    st.lists(st.sampled_from(["a", "b", "c", "ab", "d", "%2F", "A", "%41"]), max_size=5),
    st.booleans(),
)


def _error(exc: BaseException) -> tuple[type, str]:
    return type(exc), str(exc)


@SETTINGS
@given(
    routes=st.lists(route, max_size=12),
    default=st.booleans(),
    probes=st.lists(st.tuples(st.sampled_from([*METHODS, "PUT"]), path), min_size=1, max_size=10),
)
def test_router_builds_agree_with_reference(
    routes: list[tuple[str, str]], default: bool, probes: list[tuple[str, str]]
) -> None:
    tries = [cls() for cls in _builds(router.RouteTriePy, router.RouteTrieC)]
    reference = ReferenceRouter()
    for i, (method, tmpl) in enumerate(routes):
        errors = []
        for trie in tries:
            try:
                trie.add(method, tmpl, i)
            except RouteError as exc:
                errors.append(_error(exc))
            else:
                errors.append(None)
        assert all(e == errors[0] for e in errors), (method, tmpl, errors)
        if errors[0] is None:
            reference.add(method, tmpl, i)
    if default:
        for trie in tries:
            trie.set_default("dflt")
        reference.set_default("dflt")
    for trie in tries:
        assert len(trie) == len(reference.routes) + default
        assert trie.routes() == tries[0].routes()
        assert sorted(trie.routes()) == sorted(
            [(m, t) for m, t, _ in reference.routes] + ([("ANY", "$default")] if default else [])
        )
    for method, p in probes:
        expected = reference.match(method, p)
        for trie in tries:
            assert _outcome(trie, method, p) == expected, (trie, method, p, trie.routes())


@SETTINGS
@given(
    routes=st.lists(st.tuples(st.sampled_from(METHODS), template), max_size=8),
    filler=st.lists(st.sampled_from(["x", "y", "zz", "%20"]), min_size=4, max_size=4),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    slash=st.booleans(),
)
def test_router_matches_paths_built_from_templates(
    routes: list[tuple[str, str]], filler: list[str], method: str, slash: bool
) -> None:
    """Probe with paths instantiated from the templates, so most probes hit something."""
    tries = [cls() for cls in _builds(router.RouteTriePy, router.RouteTrieC)]
    reference = ReferenceRouter()
    for i, (m, tmpl) in enumerate(routes):
        try:
            tries[0].add(m, tmpl, i)
        except RouteError:
            continue
        for trie in tries[1:]:
            trie.add(m, tmpl, i)
        reference.add(m, tmpl, i)
    for _, tmpl in routes:
        parts = [p for p in tmpl.split("/") if p]
        concrete = [filler[i % 4] if p.startswith("{") else p for i, p in enumerate(parts)]
        p = "/" + "/".join(concrete) + ("/" if slash and concrete else "")
        expected = reference.match(method, p)
        for trie in tries:
            assert _outcome(trie, method, p) == expected, (method, p, trie.routes())


# -- normalize_path ----------------------------------------------------------------------

path_pieces = [
    *"/./%2eE0fFgaZ~-_ ",
    "%2e",
    "%2E",
    "%2f",
    "%00",
    "%7e",
    "%41",
    "%e9",
    "%5f",
    "%25",
    "%zz",
    "%4",
    "..",
    "\x00",
    "\xe9",
    "\u20ac",
]
path_text = st.lists(st.sampled_from(path_pieces), max_size=16).map("".join)
path_like = st.one_of(path_text.map(lambda s: "/" + s), path_text)


def _normalize(fn: Any, raw: str) -> tuple[str, str]:
    try:
        return "ok", fn(raw)
    except InvalidPathError as exc:
        return "error", str(exc)


@SETTINGS
@given(raw=path_like)
def test_normalize_builds_agree(raw: str) -> None:
    results = [_normalize(fn, raw) for fn in _builds(urlnorm.normalize_path_py, urlnorm.normalize_path_c)]
    assert all(r == results[0] for r in results), (raw, results)


@SETTINGS
@given(raw=st.one_of(path_like, st.text(max_size=16).map(lambda s: "/" + s)))
def test_normalize_is_idempotent_and_clean(raw: str) -> None:
    for fn in _builds(urlnorm.normalize_path_py, urlnorm.normalize_path_c):
        kind, out = _normalize(fn, raw)
        if kind == "error":
            continue
        assert fn(out) == out
        assert out.startswith("/")
        assert "//" not in out
        segments = out[1:].split("/")
        assert "." not in segments
        assert ".." not in segments
        assert all(0x20 < ord(ch) < 0x7F for ch in out)
        # No escape of an unreserved character survives, and hex digits are upper case.
        i = out.find("%")
        while i != -1:
            assert out[i + 1 : i + 3] == out[i + 1 : i + 3].upper()
            decoded = chr(int(out[i + 1 : i + 3], 16))
            assert not (decoded.isascii() and (decoded.isalnum() or decoded in "-._~"))
            i = out.find("%", i + 1)
