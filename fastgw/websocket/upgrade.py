"""Where the HTTP protocol hands a connection over to a WebSocket stage.

``HttpProtocol`` calls ``match`` when httptools reports an upgrade request (``Upgrade`` and
``Connection: upgrade``) and ``take_over`` when the parser stops at its end
(``HttpParserUpgrade``). ``match`` resolves the request's host and path to a stage exactly as a
plain request is resolved (same normalised path, DESIGN-RULES 1); a stage that is not a
WebSocket API's gives None, and the Upgrade is ignored (RFC 9110 7.8): the request, its body
included, is served as a plain one and the connection stays a keep-alive HTTP connection. An
upgrade for a WebSocket stage pipelined behind requests still in flight is refused (400, then
the connection closes) rather than taken over. The head is captured in a ``Handshake``: the
HTTP protocol's per-request lists are reused for the next request.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from fastgw_core.errors import InvalidPathError
from fastgw_core.urlnorm import normalize_path

if TYPE_CHECKING:
    from fastgw.server.worker import Worker
    from fastgw.websocket.config import WsStage

_WORKER: weakref.ref[Any] | None = None


def current_worker() -> Worker | None:
    """This process's worker (bound when it starts serving)."""
    return _WORKER() if _WORKER is not None else None


def bind_worker(worker: Worker) -> None:
    """Called by the worker as it starts serving: the hub and the helpers find it here. With
    WebSocket APIs in the config, the hub starts now (its Redis side too, retried in the
    background while Redis is down), not at the first connection."""
    global _WORKER
    _WORKER = weakref.ref(worker)
    if any(stage.websocket is not None for stage in worker.snapshot.stages):
        from fastgw.websocket.hub import hub

        hub()


class Handshake:
    """The head of one upgrade request for a WebSocket stage."""

    __slots__ = (
        "api_key",
        "conn_tokens",
        "domain",
        "has_body",
        "headers",
        "host_n",
        "http10",
        "method",
        "path_for_ws",
        "query",
        "source_ip",
        "stage",
        "upgrade",
    )

    def __init__(self, stage: WsStage) -> None:
        self.stage = stage
        self.headers: list[tuple[str, str]] = []
        self.query = ""
        self.method = "GET"
        self.http10 = False
        self.host_n = 1
        self.has_body = False
        self.upgrade = ""
        self.conn_tokens = ""
        self.source_ip = ""
        self.domain = ""
        self.api_key: bytes | None = None
        self.path_for_ws = "/"

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    def ws_headers(self) -> list[tuple[str, str]]:
        """The head as the WebSocket handshake reads it (Upgrade and Connection included)."""
        return [*self.headers, ("Upgrade", self.upgrade), ("Connection", self.conn_tokens)]

    def problem(self) -> tuple[int, bytes, list[tuple[str, str]]] | None:
        """What the request line and framing say before the WebSocket checks (RFC 6455 4.2.1)."""
        if self.http10 or self.host_n != 1 or self.has_body:
            return 400, b'{"message":"Bad Request"}', []
        if self.method != "GET":
            return 405, b'{"message":"Method Not Allowed"}', [("allow", "GET")]
        version = self.header("sec-websocket-version")
        if version is None or version.strip() != "13":
            # RFC 6455 4.4: the versions the server speaks, with 426.
            return 426, b'{"message":"Upgrade Required"}', [("sec-websocket-version", "13")]
        return None


def match(proto: Any, method: str, http10: bool) -> Handshake | None:
    """The handshake of an upgrade request if its stage is a WebSocket API's, else None."""
    from fastgw.server.protocol import fwd_headers, resolve_stage

    worker = proto.worker
    snapshot = worker.snapshot
    url: bytes = proto.url
    if url[:1] != b"/":
        return None
    raw_path, _, query = url.partition(b"?")
    try:
        path = normalize_path(raw_path.decode("latin-1"))
    except InvalidPathError:
        return None
    host = proto.host
    site = snapshot.host_cache.get(host)
    if site is None:
        site = snapshot.site_for_header(host)
    if site.mtls is not None and site.mtls != proto.tls_name:
        return None
    stage, inner = resolve_stage(site, path)
    if stage is None or stage.websocket is None or inner != "/":
        return None
    hs = Handshake(stage.websocket)
    hs.method = method
    hs.http10 = http10
    hs.host_n = proto.host_n
    hs.has_body = proto.cl not in (None, b"0") or proto.te is not None
    hs.upgrade = proto.ws.decode("latin-1") if isinstance(proto.ws, bytes) else ""
    hs.conn_tokens = proto.conn_tokens.decode("latin-1") if proto.conn_tokens else ""
    headers: list[tuple[str, str]] = []
    if host is not None:
        headers.append(("Host", host.decode("latin-1")))
    fwd_headers(proto.fwd, headers) if proto.fwd else None
    peer = proto.peer
    hs.source_ip = peer
    # The X-Forwarded-* headers AWS adds to $connect events, as the gateway forwards them.
    if proto.xff:
        xff = proto.xff.decode("latin-1")
        if proto.peer_trusted:
            from fastgw.server import _protocol_py

            hs.source_ip = _protocol_py._client_of(xff, peer, snapshot.trusted_proxies)
        headers.append(("X-Forwarded-For", f"{xff}, {peer}"))
    else:
        headers.append(("X-Forwarded-For", peer))
    if proto.local_port:
        headers.append(("X-Forwarded-Port", proto.local_port))
    headers.append(("X-Forwarded-Proto", "http" if proto.tls_name is None else "https"))
    hs.headers = headers
    hs.query = query.decode("latin-1")
    hs.path_for_ws = url.decode("latin-1")
    if host is not None:
        text = host.decode("latin-1").lower()
        hs.domain = text.rpartition(":")[0] if ":" in text and not text.endswith("]") else text
    hs.api_key = proto.api_key
    return hs


def take_over(proto: Any, hs: Handshake, rest: bytes) -> None:
    """Make the connection a WebSocket: ``rest`` is what the client sent after the head."""
    from fastgw.websocket.connection import WsConnection
    from fastgw.websocket.hub import hub

    worker: Worker = proto.worker
    if current_worker() is not worker:
        bind_worker(worker)
    worker.connections.discard(proto)
    transport = proto.transport
    conn = WsConnection(worker, hub(), hs)
    transport.set_protocol(conn)
    conn.start(transport, hs, rest)
