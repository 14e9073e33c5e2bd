"""normalize_path: the one normal form fastgw routes on and forwards (both builds)."""

from collections.abc import Callable

import pytest

from fastgw_core import urlnorm
from fastgw_core.errors import InvalidPathError, KernelError

Normalize = Callable[[str], str]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # already normal
        ("/", "/"),
        ("/pets", "/pets"),
        ("/pets/", "/pets/"),
        ("/a/b/c", "/a/b/c"),
        ("/a.b/c..d/.e/f.", "/a.b/c..d/.e/f."),
        ("/a-b_c~d!$&'()*+,;=:@", "/a-b_c~d!$&'()*+,;=:@"),
        # empty segments collapse
        ("//", "/"),
        ("///a", "/a"),
        ("/a//b", "/a/b"),
        ("/a//b//", "/a/b/"),
        # dot segments (RFC 3986 5.2.4)
        ("/.", "/"),
        ("/..", "/"),
        ("/../..", "/"),
        ("/./a", "/a"),
        ("/a/.", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/..", "/"),
        ("/a/../", "/"),
        ("/a/b/..", "/a/"),
        ("/a/b/../c", "/a/c"),
        ("/a/./b/../../c/", "/c/"),
        ("/../a", "/a"),
        ("/a/.../b", "/a/.../b"),
        # percent-escapes
        ("/%41%62%7a", "/Abz"),
        ("/%30%39%2D%2E%5F%7E", "/09-._~"),
        ("/%2f", "/%2F"),
        ("/%2F", "/%2F"),
        ("/a%3fb%23c", "/a%3Fb%23c"),
        ("/%20%7f%80%ff", "/%20%7F%80%FF"),
        ("/%25", "/%25"),
        ("/%252e%252e", "/%252e%252e"),
        ("/%e2%82%ac", "/%E2%82%AC"),
    ],
)
def test_normal_form(normalize_impl: Normalize, raw: str, expected: str) -> None:
    assert normalize_impl(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a/%2e%2e/admin", "/admin"),
        ("/a/%2E./b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/a/%2e/b", "/a/b"),
        ("/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"),
        ("//admin", "/admin"),
        ("/admin%2fx", "/admin%2Fx"),
        ("/admin%2f..%2fsecret", "/admin%2F..%2Fsecret"),  # %2F never becomes a separator
        ("/%7Euser", "/~user"),
        ("/public/..//admin", "/admin"),
        ("/public/%2e%2e/%2e%2e/admin/", "/admin/"),
    ],
)
def test_bypass_classics(normalize_impl: Normalize, raw: str, expected: str) -> None:
    assert normalize_impl(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "path must start with '/': ''"),
        ("a/b", "path must start with '/': 'a/b'"),
        ("*", "path must start with '/'"),
        ("http://h/x", "path must start with '/'"),
        ("/a b", "invalid character ' ' at offset 2 in path"),
        ("/a\x00", "invalid character '\\x00' at offset 2"),
        ("/a\tb", "invalid character '\\t' at offset 2"),
        ("/\x7f", "invalid character '\\x7f' at offset 1"),
        ("/\x80", "invalid character '\\x80' at offset 1"),
        ("/caf\xe9", "invalid character 'é' at offset 4"),
        ("/x/\u20ac", "invalid character '€' at offset 3"),
        ("/a b/\u20ac", "invalid character ' ' at offset 2"),
        ("/\U0001f600", "invalid character '\U0001f600' at offset 1"),
        ("/%", "truncated percent-escape '%' at offset 1"),
        ("/a%4", "truncated percent-escape '%4' at offset 2"),
        ("/a%g1", "invalid percent-escape '%g1' at offset 2"),
        ("/a%1g", "invalid percent-escape '%1g' at offset 2"),
        ("/a%+f", "invalid percent-escape '%+f' at offset 2"),
        ("/a%%41", "invalid percent-escape '%%4' at offset 2"),
        ("/a%/b", "invalid percent-escape '%/b' at offset 2"),
        ("/a%/", "truncated percent-escape '%/' at offset 2"),
        ("/a%00", "percent-encoded NUL at offset 2"),
        ("/%41%00%zz", "percent-encoded NUL at offset 4"),
        ("/%zz/a b", "invalid character ' ' at offset 6"),  # raw characters are checked first
    ],
)
def test_errors(normalize_impl: Normalize, raw: str, message: str) -> None:
    with pytest.raises(InvalidPathError) as info:
        normalize_impl(raw)
    assert message in str(info.value)
    assert isinstance(info.value, KernelError)
    assert isinstance(info.value, ValueError)


def test_long_paths(normalize_impl: Normalize) -> None:
    # The compiled build uses a stack buffer up to 512 bytes and the heap above it.
    for n in (100, 511, 512, 513, 5000):
        raw = "/" + "/".join(["seg"] * n) + "/%2e%2e/x%2f"
        expected = "/" + "/".join(["seg"] * (n - 1)) + "/x%2F"
        assert normalize_impl(raw) == expected
        assert normalize_impl("/" + "a" * n) == "/" + "a" * n
    assert normalize_impl("/" + "/." * 1000) == "/"
    assert normalize_impl("/" + "%41" * 1000) == "/" + "A" * 1000


def test_fast_path_returns_same_object(normalize_impl: Normalize) -> None:
    raw = "".join(["/pets/", "123", "/owner"])  # built at run time: not an interned constant
    assert normalize_impl(raw) is raw


def test_python_fast_path_returns_same_object() -> None:
    raw = "".join(["/v1/", "users/", "42"])
    assert urlnorm.normalize_path_py(raw) is raw


def test_idempotent_on_examples(normalize_impl: Normalize) -> None:
    for raw in ["/a/%2e%2e/admin", "/%2F%2e%7e/./x/", "//a//b/../", "/%252e"]:
        once = normalize_impl(raw)
        assert normalize_impl(once) == once


def test_rejects_none(normalize_impl: Normalize) -> None:
    with pytest.raises((TypeError, AttributeError)):
        normalize_impl(None)  # type: ignore[arg-type]


def test_facade_binds_one_build() -> None:
    expected = urlnorm.normalize_path_c if urlnorm.COMPILED else urlnorm.normalize_path_py
    assert urlnorm.normalize_path is expected
