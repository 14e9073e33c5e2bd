"""Shared fixtures of the telemetry tests."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from helpers import HOST
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.core.conftest import require_compiled


class Route(SimpleNamespace):
    """A stand-in route: keys by identity (RouteRuntime: eq=False)."""

    __hash__ = object.__hash__


def twin(request: pytest.FixtureRequest) -> ModuleType:
    """The module ``request.param`` names: a ``_py`` twin, or its ``_c`` build, which fails the
    test when it is missing unless FASTGW_NO_EXTENSIONS is set (then it skips), as the core
    kernels' tests do."""
    name: str = request.param
    try:
        return importlib.import_module(name)
    except ImportError:
        if not name.endswith("_c"):
            raise
        return require_compiled(None, name)  # type: ignore[no-any-return]


class Collector:
    """An OTLP/HTTP trace receiver: every POST to /v1/traces decoded and kept, as spans (with their
    resource's attributes), as posts (lower-cased headers and that POST's spans) and as the
    scopes (name, version) the spans came under."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, str], Any]] = []
        self.posts: list[tuple[dict[str, str], list[Any]]] = []
        self.scopes: list[tuple[str, str]] = []
        self.requests = 0
        self.content_types: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                owner.content_types.append(self.headers["content-type"])
                req = trace_service_pb2.ExportTraceServiceRequest()
                req.ParseFromString(body)
                post = []
                for rs in req.resource_spans:
                    resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        owner.scopes.append((ss.scope.name, ss.scope.version))
                        for span in ss.spans:
                            owner.spans.append((resource, span))
                            post.append(span)
                owner.posts.append(({k.lower(): v for k, v in self.headers.items()}, post))
                owner.requests += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1/traces"

    def trace(self, trace_hex: str) -> list[Any]:
        return [s for _, s in list(self.spans) if s.trace_id.hex() == trace_hex]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()
