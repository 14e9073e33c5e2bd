"""A small echo backend: answers every request with the request it received, as JSON.

Used by the demo (`fastgw run` with no config) and by the tests. Bodies are echoed as text
when they are UTF-8, else base64 (``isBase64Encoded``), as AWS proxy events do.
"""

from __future__ import annotations

import asyncio
import base64

import httptools
import orjson


class EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[list[str]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append([name.decode("latin-1"), value.decode("latin-1")])

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        raw = b"".join(self.body)
        path, _, query = self.url.decode("latin-1").partition("?")
        try:
            body, b64 = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            body, b64 = base64.b64encode(raw).decode(), True
        doc = {
            "method": self.parser.get_method().decode(),
            "path": path,
            "query": query,
            "httpVersion": self.parser.get_http_version(),
            "headers": self.headers,
            "body": body,
            "isBase64Encoded": b64,
        }
        out = orjson.dumps(doc)
        keep = self.parser.should_keep_alive()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (len(out), b"" if keep else b"connection: close\r\n", out)
        )
        if not keep:
            self.transport.close()
        self.url = b""
        self.headers = []
        self.body = []


async def serve_echo(host: str, port: int) -> asyncio.base_events.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(EchoProtocol, host, port)


def run_echo(host: str, port: int) -> None:
    """Serve forever (a child process of the demo supervisor)."""
    import uvloop

    async def main() -> None:
        server = await serve_echo(host, port)
        await server.serve_forever()

    uvloop.run(main())
