"""What the request pipeline works on: one buffered request and one buffered response.

Routes whose handling needs the whole request (function integrations, authorizers, plugins)
leave the streaming fast path: the protocol buffers the request (head and body, within the
configured limits), builds a ``Request`` and runs the route's pipeline, which ends in a
``Response`` (or one of the gateway's precomputed ``LocalReply`` errors).

Header names keep the client's spelling and order; ``header()`` looks them up without regard
to case. Only hop-by-hop headers are missing (RFC 9110 7.6.1): ``Connection`` and the headers
it names, ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``,
``Proxy-*``. ``Host``, ``Content-Length`` (when there is a body), ``X-Forwarded-For`` (the
socket peer appended), ``X-Forwarded-Proto`` and ``X-Forwarded-Port`` are present, as AWS
passes them to Lambda functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastgw_core.headers import find_header

if TYPE_CHECKING:
    from fastgw.config.compile import RouteRuntime


class Request:
    """One request as the pipeline sees it. Plugins may edit ``headers``, ``query``, ``body``."""

    __slots__ = (
        "_lookups",
        "_lower",
        "api_key",
        "api_key_id",
        "authorizer",
        "body",
        "cache_key",
        "client_cert",
        "ctx",
        "domain",
        "exchange",
        "headers",
        "http_version",
        "iam",
        "method",
        "params",
        "path",
        "query",
        "request_id",
        "resource_path",
        "route",
        "source_ip",
        "time_ms",
        "usage_key",
    )

    def __init__(
        self,
        route: RouteRuntime,
        method: str,
        path: str,
        resource_path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        request_id: str,
        time_ms: int,
        params: dict[str, str] | None = None,
        domain: str = "",
        http_version: str = "HTTP/1.1",
        api_key: str | None = None,
    ) -> None:
        self.route = route
        #: The method as received (GET, POST, ...).
        self.method = method
        #: The normalised path as received, with the stage or base-path prefix ("/prod/pets/1").
        self.path = path
        #: The path inside the stage, with actual values ("/pets/1").
        self.resource_path = resource_path
        #: The raw query string (no '?', not decoded).
        self.query = query
        self.headers = headers
        self.body = body
        self.source_ip = source_ip
        self.request_id = request_id
        #: Arrival time, ms since the epoch.
        self.time_ms = time_ms
        #: Path parameters by name (greedy ones hold the rest of the path), or None.
        self.params = params
        #: The Host header without the port ("" if none).
        self.domain = domain
        self.http_version = http_version
        #: The X-API-Key value (None if absent).
        self.api_key = api_key
        #: What an authorizer returned: {"principalId": ..., **context} for Lambda authorizers
        #: (requestContext.authorizer), or None.
        self.authorizer: dict[str, Any] | None = None
        #: Id of the API key the request was admitted with, when one was required.
        self.api_key_id: str | None = None
        #: A Lambda authorizer's usageIdentifierKey (apiKeySource AUTHORIZER).
        self.usage_key: str | None = None
        #: AWS_IAM: the verified caller {"accessKey", "accountId", "caller", "user", "userArn"}.
        self.iam: dict[str, Any] | None = None
        #: Mutual TLS: the client certificate as $context.identity.clientCert ({"clientCertPem",
        #: "subjectDN", "issuerDN", "serialNumber", "validity": {"notBefore", "notAfter"}}).
        self.client_cert: dict[str, Any] | None = None
        #: Free space for plugins, shared by all phases of this request.
        self.ctx: dict[str, Any] = {}
        #: The stage cache's key of this request when it missed (the response is stored under it).
        self.cache_key: bytes | None = None
        #: The protocol's exchange (its upstream pools serve buffered integrations), or None.
        self.exchange: Any = None
        self._lower: dict[str, str] | None = None
        self._lookups = 0

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header's value, case-insensitively; repeated headers are joined with ','.

        PERF: the first two lookups scan the list (most requests need one or two headers: an
        authorizer's token, a mapped route's Content-Type and Accept); the map of every header
        is built from the third one on."""
        lower = self._lower
        if lower is None:
            headers = self.headers
            if self._lookups < 2:
                self._lookups += 1
                value = find_header(headers, name.lower())  # compiled (fastgw_core.headers)
                return default if value is None else value
            lower = {k.lower(): v for k, v in headers}
            if len(lower) != len(headers):  # a repeated name: join its values
                lower = {}
                for k, v in headers:
                    lk = k.lower()
                    old = lower.get(lk)
                    lower[lk] = v if old is None else old + "," + v
            self._lower = lower
        return lower.get(name.lower(), default)

    def set_header(self, name: str, value: str | None) -> None:
        """Replace every header ``name`` (any case) by one with ``value``; None removes it."""
        lname = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lname]
        if value is not None:
            self.headers.append((name, value))
        self._lower = None


class Response:
    """A whole response. ``headers`` is a list of (name, value); a name may repeat."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int = 200, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    def set_header(self, name: str, value: str | None) -> None:
        lname = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lname]
        if value is not None:
            self.headers.append((name, value))

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers!r}, {self.body[:64]!r})"
