"""Redis fixtures: one real server per test session, emptied before each test that asks for it.

Written so that it can move to ``tests/conftest.py`` unchanged: ``redis_server`` lives in
``tests/redis_server.py``, importable because the top-level conftest puts ``tests/`` on
``sys.path`` (and this file does too, so it works from either place).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

for _dir in (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent):
    if (_dir / "redis_server.py").is_file() and str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

from redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server (or valkey-server) on a free loopback port, for the whole session."""
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
