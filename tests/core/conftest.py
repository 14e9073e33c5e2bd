"""Fixtures that run every core test on both kernel builds (compiled and pure Python).

A missing compiled build fails the ``compiled`` cases unless ``FASTGW_NO_EXTENSIONS`` is
set: a silently skipped extension would hide a broken build.
"""

import os
from collections.abc import Callable
from typing import Any

import pytest

from fastgw_core import headers, reqhead, router, urlnorm

NO_EXTENSIONS = bool(os.environ.get("FASTGW_NO_EXTENSIONS"))
IMPLS = ["python", "compiled"]


def pytest_configure(config: pytest.Config) -> None:
    # NOTE: when a Hypothesis test fails, its pytest plugin imports libcst (to suggest an
    # @example patch), which warns through mypy_extensions; under filterwarnings=error that
    # becomes an INTERNALERROR that hides the falsifying example. Belongs in pyproject.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


def require_compiled(obj: Any, what: str) -> Any:
    """Return the compiled object, or skip (FASTGW_NO_EXTENSIONS set) or fail (broken build)."""
    if obj is None:
        if NO_EXTENSIONS:
            pytest.skip(f"compiled {what} disabled by FASTGW_NO_EXTENSIONS")
        pytest.fail(
            f"compiled {what} is not importable; build it (pip install -e . / setup.py build_ext "
            "--inplace) or set FASTGW_NO_EXTENSIONS=1 to test only the Python build"
        )
    return obj


@pytest.fixture(params=IMPLS, scope="session")
def router_impl(request: pytest.FixtureRequest) -> type:
    """The ``RouteTrie`` class of one build."""
    if request.param == "python":
        return router.RouteTriePy
    return require_compiled(router.RouteTrieC, "router")  # type: ignore[no-any-return]


@pytest.fixture(params=IMPLS, scope="session")
def normalize_impl(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """The ``normalize_path`` function of one build."""
    if request.param == "python":
        return urlnorm.normalize_path_py
    return require_compiled(urlnorm.normalize_path_c, "urlnorm")  # type: ignore[no-any-return]


@pytest.fixture(params=IMPLS, scope="session")
def rewrite_impl(request: pytest.FixtureRequest) -> Callable[[bytes, bytes, int], tuple[bytes, int, int]]:
    """The ``rewrite_response_head`` function of one build."""
    if request.param == "python":
        return headers.rewrite_response_head_py
    return require_compiled(headers.rewrite_response_head_c, "headers")  # type: ignore[no-any-return]


@pytest.fixture(params=IMPLS, scope="session")
def reqhead_impl(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The ``parse_request_head`` function of one build."""
    if request.param == "python":
        return reqhead.parse_request_head_py
    return require_compiled(reqhead.parse_request_head_c, "reqhead")  # type: ignore[no-any-return]
