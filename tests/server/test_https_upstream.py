"""HTTPS upstreams (most AWS exports point at https:// backends): the streaming proxy, buffered
HTTP integrations and keep-alive reuse over TLS to the demo's echo backend behind a trustme
certificate; the certificate is verified against ``gateway.upstream.ca_file`` (else the
system's CAs) and the URI's host name, and a failed verification is a 502, never a hang."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from helpers import HOST, GatewayFactory, LoopThread, RawConn, free_port

pytestmark = pytest.mark.timeout(60)


class TlsEcho:
    """The echo backend (fastgw.demo.echo) behind TLS, counting its connections."""

    def __init__(self, lt: LoopThread, ctx: ssl.SSLContext) -> None:
        from fastgw.demo.echo import EchoProtocol

        self.lt = lt
        self.port = free_port()
        self.connections = 0
        owner = self

        class Counting(EchoProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                owner.connections += 1
                super().connection_made(transport)

        async def start() -> asyncio.AbstractServer:
            return await asyncio.get_running_loop().create_server(Counting, HOST, self.port, ssl=ctx)

        self.server = lt.run(start())

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        self.lt.run(stop())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("upstream-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="module")
def tls_echo(loop_thread: LoopThread, pki: tuple[trustme.CA, Path]) -> Iterator[TlsEcho]:
    ca, _ = pki
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    srv = TlsEcho(loop_thread, ctx)
    yield srv
    srv.close()


def config(port: int, ca_file: Path | None) -> dict[str, Any]:
    gateway: dict[str, Any] = {}
    if ca_file is not None:
        gateway["upstream"] = {"ca_file": str(ca_file)}
    return {
        "gateway": gateway,
        "apis": [
            {
                "name": "secure",
                "id": "secure1",
                "routes": [
                    {
                        "route": "ANY /p/{proxy+}",
                        "integration": {"type": "HTTP_PROXY", "uri": f"https://localhost:{port}/{{proxy}}"},
                    },
                    {
                        "route": "GET /ip/{proxy+}",
                        "integration": {"type": "HTTP_PROXY", "uri": f"https://127.0.0.1:{port}/{{proxy}}"},
                    },
                    {
                        "route": "POST /mapped",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"https://localhost:{port}/mapped",
                            "requestTemplates": {"application/json": "{\"wrapped\": $input.json('$')}"},
                        },
                    },
                    {
                        # The certificate names localhost and 127.0.0.1, not this name.
                        "route": "GET /wrong",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"https://localhost.localdomain:{port}/x",
                        },
                    },
                ],
                "stages": [{"name": "prod"}],
            }
        ],
    }


def test_proxy_and_http_integrations_reach_an_https_backend(
    gateway_factory: GatewayFactory, tls_echo: TlsEcho, pki: tuple[trustme.CA, Path]
) -> None:
    gw = gateway_factory(config(tls_echo.port, pki[1]))
    before = tls_echo.connections
    with RawConn(gw.port) as c:
        for i in range(3):
            resp = c.request("GET", f"/prod/p/items/{i}?q=1")
            assert resp.status == 200, resp.body
            doc = resp.json()
            assert doc["path"] == f"/items/{i}" and doc["query"] == "q=1"
            assert ("host", f"localhost:{tls_echo.port}") in [(k.lower(), v) for k, v in doc["headers"]]
        resp = c.request("GET", "/prod/ip/by-address")
        assert resp.status == 200 and resp.json()["path"] == "/by-address"
        resp = c.request(
            "POST", "/prod/mapped", headers=[("Content-Type", "application/json")], body=b'{"a": 1}'
        )
        assert resp.status == 200, resp.body
        assert resp.json()["body"].replace(" ", "") == '{"wrapped":{"a":1}}'
    # Keep-alive over TLS: the upstream connections are reused, not one per request.
    assert tls_echo.connections - before <= 3


def test_an_unverifiable_backend_is_a_502(
    gateway_factory: GatewayFactory, tls_echo: TlsEcho, pki: tuple[trustme.CA, Path]
) -> None:
    gw = gateway_factory(config(tls_echo.port, pki[1]))
    with RawConn(gw.port) as c:
        resp = c.request("GET", "/prod/wrong")
    assert resp.status == 502
    assert resp.json() == {"message": "Internal server error"}
    # Without the test CA the system's CAs do not trust the certificate.
    gw2 = gateway_factory(config(tls_echo.port, None))
    with RawConn(gw2.port) as c:
        assert c.request("GET", "/prod/p/x").status == 502
        assert c.request("POST", "/prod/mapped", body=b"{}").status == 502


def test_a_missing_ca_file_is_refused_at_load(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    from fastgw.config.compile import compile_config
    from fastgw.config.load import ConfigError, decode_config

    with pytest.raises(ConfigError) as info:
        compile_config(decode_config(config(1, tmp_path / "nope.pem")))
    assert any(i.path == "$.gateway.upstream.ca_file" for i in info.value.issues)
