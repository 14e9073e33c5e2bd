"""RouteTrie: AWS API Gateway routing semantics, on both builds."""

from typing import Any

import pytest

from fastgw_core import router
from fastgw_core.errors import KernelError, RouteConflictError, RouteError


def build(impl: type, *routes: tuple[str, str]) -> Any:
    trie = impl()
    for method, template in routes:
        trie.add(method, template, f"{method} {template}")
    return trie


def hit(trie: Any, method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """(value, params) of the match, or None."""
    m = trie.match(method, path)
    if m is None:
        return None
    assert m.value == "$default" or m.value == f"{m.method} {m.template}"
    return m.value, m.params


# -- the AWS examples --------------------------------------------------------------------


def test_aws_pets(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/pets"), ("GET", "/pets/{petId}"), ("ANY", "/{proxy+}"))
    assert hit(trie, "GET", "/pets") == ("GET /pets", {})
    assert hit(trie, "GET", "/pets/") == ("GET /pets", {})
    assert hit(trie, "GET", "/pets/6") == ("GET /pets/{petId}", {"petId": "6"})
    assert hit(trie, "GET", "/pets/6/toys") == ("ANY /{proxy+}", {"proxy": "pets/6/toys"})
    assert hit(trie, "POST", "/pets") == ("ANY /{proxy+}", {"proxy": "pets"})
    assert hit(trie, "DELETE", "/x") == ("ANY /{proxy+}", {"proxy": "x"})
    # A greedy parameter needs at least one segment: /{proxy+} does not match "/".
    assert trie.match("GET", "/") is None


def test_root_route(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/"), ("ANY", "/{proxy+}"))
    assert hit(trie, "GET", "/") == ("GET /", {})
    assert hit(trie, "POST", "/") is None
    assert hit(trie, "GET", "/a") == ("ANY /{proxy+}", {"proxy": "a"})


# -- precedence --------------------------------------------------------------------------


def test_literal_beats_param_beats_greedy(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/{proxy+}"), ("GET", "/a/{x}"), ("GET", "/a/b"))
    assert hit(trie, "GET", "/a/b") == ("GET /a/b", {})
    assert hit(trie, "GET", "/a/c") == ("GET /a/{x}", {"x": "c"})
    assert hit(trie, "GET", "/a/b/c") == ("GET /a/{proxy+}", {"proxy": "b/c"})
    assert hit(trie, "GET", "/a") is None


def test_literal_is_case_sensitive(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/Pets"))
    assert hit(trie, "GET", "/Pets") == ("GET /Pets", {})
    assert trie.match("GET", "/pets") is None


def test_precedence_is_per_segment_depth_first(router_impl: type) -> None:
    # A literal early in the path wins over a literal later in the path.
    trie = build(router_impl, ("GET", "/a/{x}/c"), ("GET", "/{y}/b/c"))
    assert hit(trie, "GET", "/a/b/c") == ("GET /a/{x}/c", {"x": "b"})
    assert hit(trie, "GET", "/z/b/c") == ("GET /{y}/b/c", {"y": "z"})


def test_backtracking_on_path(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/b/c"), ("GET", "/a/{x}/d"), ("GET", "/{y}/b/e"))
    assert hit(trie, "GET", "/a/b/c") == ("GET /a/b/c", {})
    assert hit(trie, "GET", "/a/b/d") == ("GET /a/{x}/d", {"x": "b"})
    assert hit(trie, "GET", "/a/b/e") == ("GET /{y}/b/e", {"y": "a"})
    assert trie.match("GET", "/a/b/f") is None


def test_backtracking_on_method(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/b"), ("POST", "/a/{x}"), ("PUT", "/{proxy+}"))
    assert hit(trie, "GET", "/a/b") == ("GET /a/b", {})
    assert hit(trie, "POST", "/a/b") == ("POST /a/{x}", {"x": "b"})
    assert hit(trie, "PUT", "/a/b") == ("PUT /{proxy+}", {"proxy": "a/b"})
    assert trie.match("PATCH", "/a/b") is None


def test_backtracking_discards_params(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/{a}/{b}/x"), ("GET", "/{a}/{proxy+}"))
    assert hit(trie, "GET", "/1/2/y") == ("GET /{a}/{proxy+}", {"a": "1", "proxy": "2/y"})
    assert hit(trie, "GET", "/1/2/x") == ("GET /{a}/{b}/x", {"a": "1", "b": "2"})


def test_greedy_tried_after_param_subtree_fails(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/{x}/deep"), ("GET", "/{rest+}"))
    assert hit(trie, "GET", "/a") == ("GET /{rest+}", {"rest": "a"})
    assert hit(trie, "GET", "/a/deep") == ("GET /{x}/deep", {"x": "a"})
    assert hit(trie, "GET", "/a/deeper") == ("GET /{rest+}", {"rest": "a/deeper"})


def test_exact_method_beats_any(router_impl: type) -> None:
    trie = build(router_impl, ("ANY", "/a"), ("GET", "/a"))
    assert hit(trie, "GET", "/a") == ("GET /a", {})
    assert hit(trie, "POST", "/a") == ("ANY /a", {})
    assert hit(trie, "get", "/a") == ("ANY /a", {})  # methods compare exactly
    m = trie.match("POST", "/a")
    assert m.method == "ANY"
    assert m.template == "/a"


def test_exact_method_on_less_specific_node_loses_to_any(router_impl: type) -> None:
    # Precedence is by path first; the method decides only among routes of one node.
    trie = build(router_impl, ("ANY", "/a/b"), ("GET", "/a/{x}"))
    assert hit(trie, "GET", "/a/b") == ("ANY /a/b", {})


# -- $default ----------------------------------------------------------------------------


def test_default_route(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a"))
    assert trie.match("GET", "/b") is None
    trie.set_default("$default")
    m = trie.match("GET", "/b")
    assert (m.value, m.method, m.template, m.params) == ("$default", "ANY", "$default", {})
    assert hit(trie, "POST", "/a") == ("$default", {})
    assert hit(trie, "GET", "/") == ("$default", {})
    assert hit(trie, "GET", "/a") == ("GET /a", {})


def test_default_route_set_twice(router_impl: type) -> None:
    trie = router_impl()
    trie.set_default(1)
    with pytest.raises(RouteConflictError, match=r"\$default"):
        trie.set_default(2)
    assert trie.match("GET", "/x").value == 1
    assert len(trie) == 1


# -- paths and parameters ----------------------------------------------------------------


def test_trailing_slash_is_ignored(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/{x}"), ("GET", "/b"))
    assert hit(trie, "GET", "/a/1/") == ("GET /a/{x}", {"x": "1"})
    assert hit(trie, "GET", "/b/") == ("GET /b", {})
    assert trie.match("GET", "/a/") is None  # {x} needs a non-empty segment


def test_greedy_value_is_the_rest_as_given(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/echo/{proxy+}"), ("GET", "/echo"))
    assert hit(trie, "GET", "/echo/a/b/") == ("GET /echo/{proxy+}", {"proxy": "a/b/"})
    assert hit(trie, "GET", "/echo/a%2Fb") == ("GET /echo/{proxy+}", {"proxy": "a%2Fb"})
    assert hit(trie, "GET", "/echo/") == ("GET /echo", {})  # zero segments left: not greedy


def test_params_are_not_decoded(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/users/{name}/files/{path+}"))
    m = trie.match("GET", "/users/J%C3%B6rg/files/a%20b/c.txt")
    assert m.params == {"name": "J%C3%B6rg", "path": "a%20b/c.txt"}


def test_param_names(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/{a-b.c_D9}/{x+}"))
    assert hit(trie, "GET", "/1/2") == ("GET /{a-b.c_D9}/{x+}", {"a-b.c_D9": "1", "x": "2"})


def test_many_params(router_impl: type) -> None:
    # More parameters than the compiled build keeps on the stack.
    names = [f"p{i}" for i in range(40)]
    template = "/" + "/".join("{" + n + "}" for n in names)
    trie = router_impl()
    trie.add("GET", template, "deep")
    trie.add("GET", "/x/{y}", "shallow")
    path = "/" + "/".join(str(i) for i in range(40))
    m = trie.match("GET", path)
    assert m.value == "deep"
    assert m.params == {n: str(i) for i, n in enumerate(names)}
    assert trie.match("GET", "/x/1").params == {"y": "1"}


def test_many_literal_children(router_impl: type) -> None:
    # Above the fan-out where the compiled build stops scanning and uses its dict.
    trie = router_impl()
    for i in range(30):
        trie.add("GET", f"/s{i}/{{id}}", i)
    for i in range(5):
        trie.add("GET", f"/few/s{i}", i)
    for i in range(30):
        assert trie.match("GET", f"/s{i}/x").value == i
    assert trie.match("GET", "/s30/x") is None
    assert trie.match("GET", "/few/s4").value == 4
    assert trie.match("GET", "/few/s5") is None


def test_non_latin1_path(router_impl: type) -> None:
    # match() expects normalised paths, but must still behave on any str.
    trie = build(router_impl, ("GET", "/caf\u00e9/{x}"), ("GET", "/a/{proxy+}"))
    assert hit(trie, "GET", "/caf\u00e9/\u20ac") == ("GET /caf\u00e9/{x}", {"x": "\u20ac"})
    assert hit(trie, "GET", "/a/\u20ac/b") == ("GET /a/{proxy+}", {"proxy": "\u20ac/b"})
    assert trie.match("GET", "/\u20ac") is None


def test_route_match_is_read_only(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/{x}"))
    m = trie.match("GET", "/a/1")
    for attr in ("value", "method", "template", "params"):
        with pytest.raises(AttributeError):
            setattr(m, attr, None)
    assert "template='/a/{x}'" in repr(m)
    assert "params={'x': '1'}" in repr(m)


def test_route_match_params_not_shared(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a"))
    first = trie.match("GET", "/a")
    first.params["oops"] = "1"
    assert trie.match("GET", "/a").params == {}


def test_match_parameter_field_is_readable(router_impl: type) -> None:
    """``_params`` (the dict itself, None for a route without parameters) is what the protocol
    reads, in either build of it, next to either build of the router."""
    trie = build(router_impl, ("GET", "/a/{x}"), ("GET", "/b"))
    assert trie.match("GET", "/a/1")._params == {"x": "1"}
    assert trie.match("GET", "/b")._params is None


def test_value_is_returned_as_is(router_impl: type) -> None:
    trie = router_impl()
    value = object()
    trie.add("GET", "/a", value)
    assert trie.match("GET", "/a").value is value


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "template", "reason"),
    [
        ("GET", "", "must start with '/'"),
        ("GET", "pets", "must start with '/'"),
        ("GET", "/a//b", "empty segment"),
        ("GET", "//", "empty segment"),
        ("GET", "/a/", "trailing slash"),
        ("GET", "/a{b}", "braces inside literal"),
        ("GET", "/a}", "braces inside literal"),
        ("GET", "/{a", "braces inside literal"),
        ("GET", "/{}", "invalid parameter name"),
        ("GET", "/{+}", "invalid parameter name"),
        ("GET", "/{a b}", "invalid parameter name"),
        ("GET", "/{a/b}", "braces inside literal"),
        ("GET", "/{{a}}", "invalid parameter name"),
        ("GET", "/{a+}/b", "must be the last segment"),
        ("GET", "/{a+}/{b}", "must be the last segment"),
        ("GET", "/{a}/{a}", "duplicate parameter name 'a'"),
        ("GET", "/{a}/b/{a+}", "duplicate parameter name 'a'"),
        ("GET", "/a/./b", "dot segment"),
        ("GET", "/a/..", "dot segment"),
        ("get", "/a", "method must be an upper-case token or ANY"),
        ("", "/a", "method must be an upper-case token or ANY"),
        ("GE T", "/a", "method must be an upper-case token or ANY"),
        ("GET\n", "/a", "method must be an upper-case token or ANY"),
    ],
)
def test_invalid_templates(router_impl: type, method: str, template: str, reason: str) -> None:
    trie = router_impl()
    with pytest.raises(RouteError) as info:
        trie.add(method, template, None)
    assert not isinstance(info.value, RouteConflictError)
    assert isinstance(info.value, KernelError)
    assert reason in str(info.value)
    assert template in str(info.value)
    assert len(trie) == 0
    assert trie.routes() == []


@pytest.mark.parametrize("method", ["GET", "DELETE", "M-SEARCH", "PROPFIND", "ANY", "X_CUSTOM1"])
def test_valid_methods(router_impl: type, method: str) -> None:
    trie = build(router_impl, (method, "/a"))
    assert trie.match(method, "/a").method == method


def test_non_str_arguments(router_impl: type) -> None:
    trie = router_impl()
    with pytest.raises(TypeError):
        trie.add("GET", None, 1)
    with pytest.raises(TypeError):
        trie.add(None, "/a", 1)
    trie.add("GET", "/a", 1)
    with pytest.raises(TypeError):
        trie.match("GET", None)


# -- conflicts ---------------------------------------------------------------------------


def test_same_method_twice(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/{x}"), ("ANY", "/a/{x}"))
    for method in ("GET", "ANY"):
        with pytest.raises(RouteConflictError) as info:
            trie.add(method, "/a/{x}", None)
        assert f"route {method} /a/{{x}} conflicts with route {method} /a/{{x}}" in str(info.value)
    assert len(trie) == 2


def test_sibling_param_names(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/{x}"))
    with pytest.raises(RouteConflictError) as info:
        trie.add("GET", "/a/{y}/b", None)
    message = str(info.value)
    assert "/a/{y}/b" in message
    assert "/a/{x}" in message
    assert "different name" in message
    # The failed add left nothing behind.
    assert trie.routes() == [("GET", "/a/{x}")]
    assert trie.match("GET", "/a/1/b") is None
    # Same name below the parameter is fine.
    trie.add("GET", "/a/{x}/b", None)


def test_sibling_param_conflict_names_the_creating_route(router_impl: type) -> None:
    trie = build(router_impl, ("POST", "/a/{x}/c/d"))
    with pytest.raises(RouteConflictError, match=r"POST /a/\{x\}/c/d"):
        trie.add("GET", "/a/{y}", None)


def test_sibling_greedy_names(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/{p+}"))
    with pytest.raises(RouteConflictError) as info:
        trie.add("POST", "/a/{q+}", None)
    assert "/a/{q+}" in str(info.value)
    assert "/a/{p+}" in str(info.value)
    trie.add("POST", "/a/{p+}", "POST /a/{p+}")
    # A param and a greedy sibling, even with one name, are different children.
    trie.add("GET", "/a/{p}", "GET /a/{p}")
    assert len(trie) == 3
    assert hit(trie, "GET", "/a/1") == ("GET /a/{p}", {"p": "1"})
    assert hit(trie, "GET", "/a/1/2") == ("GET /a/{p+}", {"p": "1/2"})


def test_conflict_is_atomic(router_impl: type) -> None:
    trie = build(router_impl, ("GET", "/a/b/{x}"))
    with pytest.raises(RouteConflictError):
        trie.add("GET", "/a/b/{y}/new/deeper", None)
    assert trie.routes() == [("GET", "/a/b/{x}")]
    assert len(trie) == 1


# -- introspection -----------------------------------------------------------------------


def test_routes_order_and_len(router_impl: type) -> None:
    trie = router_impl()
    added = [
        ("ANY", "/{proxy+}"),
        ("GET", "/pets/{id}"),
        ("ANY", "/pets"),
        ("POST", "/pets"),
        ("GET", "/pets"),
        ("GET", "/pets/mine"),
        ("GET", "/"),
        ("DELETE", "/pets/{id}/{rest+}"),
        ("GET", "/a/{x}"),
        ("GET", "/{x}/z"),
    ]
    for method, template in added:
        trie.add(method, template, None)
    trie.set_default(None)
    assert trie.routes() == [
        ("GET", "/"),
        ("GET", "/a/{x}"),
        ("GET", "/pets"),
        ("POST", "/pets"),
        ("ANY", "/pets"),
        ("GET", "/pets/mine"),
        ("GET", "/pets/{id}"),
        ("DELETE", "/pets/{id}/{rest+}"),
        ("GET", "/{x}/z"),
        ("ANY", "/{proxy+}"),
        ("ANY", "$default"),
    ]
    assert len(trie) == len(added) + 1
    assert "11 routes" in repr(trie)


def test_empty_trie(router_impl: type) -> None:
    trie = router_impl()
    assert len(trie) == 0
    assert trie.routes() == []
    assert trie.match("GET", "/") is None
    assert trie.match("GET", "/a") is None


def test_facade_binds_one_build() -> None:
    if router.COMPILED:
        assert router.RouteTrie is router.RouteTrieC
        assert router.RouteMatch is router.RouteMatchC
    else:
        assert router.RouteTrie is router.RouteTriePy
        assert router.RouteMatch is router.RouteMatchPy
