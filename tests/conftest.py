"""Fixtures for the server and integration tests: gateway processes, upstreams, kernel builds.

The gateway runs as a real ``python -m fastgw run`` process; upstreams are real asyncio servers
on loopback in a background thread. ``kernel_build`` selects the compiled or the pure-Python
build of ``fastgw_core`` for the gateway process (through ``FASTGW_NO_EXTENSIONS``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import (
    EchoServer,
    GatewayFactory,
    LoopThread,
    ScriptedUpstream,
    closed_port,
)
from redis_server import RedisServer

# CI (CI=true) runs the property tests derandomized: the same examples on every run, so a
# submission never fails on a draw; local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

KERNEL_BUILDS = ["compiled", "python"]


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def echo_server(loop_thread: LoopThread) -> Iterator[EchoServer]:
    """The demo's echo backend on a free port (records the requests it completed)."""
    srv = EchoServer(loop_thread)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def scripted(loop_thread: LoopThread) -> Iterator[ScriptedUpstream]:
    """A scripted raw upstream; behaviour by path (/slow, /close, /reset, /garbage, ...)."""
    srv = ScriptedUpstream(loop_thread)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def refused() -> int:
    """A loopback port nothing listens on."""
    return closed_port()


@pytest.fixture(scope="module", params=KERNEL_BUILDS)
def kernel_build(request: pytest.FixtureRequest) -> str:
    """``compiled`` or ``python``: which fastgw_core build the gateway process loads."""
    if request.param == "compiled":
        from fastgw_core import COMPILED

        if not all(COMPILED.values()):
            pytest.fail("the compiled fastgw_core build is not importable; run `pip install -e .`")
    return str(request.param)


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start gateways for one test: ``gateway_factory(config_dict, workers=1)``; all are stopped after."""
    factory = GatewayFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_gateway_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    """Like ``gateway_factory``, for gateways shared by a module."""
    factory = GatewayFactory(tmp_path_factory.mktemp("gw"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server (or valkey-server) on a free loopback port, for the whole session."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, after FLUSHALL (restarted first if a test left it down)."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flushall()
    return redis_server.url
