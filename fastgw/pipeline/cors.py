"""CORS for HTTP APIs, as AWS's `Cors` configuration does it.

- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  by the gateway with 204, whether or not the API has an OPTIONS route (AWS: "API Gateway
  automatically sends a response to preflight OPTIONS requests, even if there isn't an OPTIONS
  route"). The CORS headers are sent only when the origin, method and headers are allowed.
- Every other response of the API to a request with an allowed ``Origin`` gets
  ``Access-Control-Allow-Origin`` (and ``-Allow-Credentials``, ``-Expose-Headers``); the
  integration's own ``Access-Control-*`` headers are dropped ("API Gateway ignores CORS headers
  returned from your backend integration"). Gateway errors (401, 403, 429, ...) get them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.config.model import CorsConfiguration
    from fastgw.pipeline.request import Request


class CorsRuntime:
    """One API's CORS settings, ready for requests."""

    __slots__ = (
        "any_header",
        "any_method",
        "any_origin",
        "credentials",
        "expose",
        "headers",
        "max_age",
        "methods",
        "methods_text",
        "origins",
    )

    def __init__(self, conf: CorsConfiguration) -> None:
        self.any_origin = "*" in conf.allowOrigins
        self.origins = frozenset(o.lower().rstrip("/") for o in conf.allowOrigins if o != "*")
        self.any_method = "*" in conf.allowMethods
        self.methods = frozenset(m.upper() for m in conf.allowMethods if m != "*")
        self.methods_text = ",".join(m.upper() for m in conf.allowMethods if m != "*")
        self.any_header = "*" in conf.allowHeaders
        self.headers = frozenset(h.lower() for h in conf.allowHeaders if h != "*")
        self.expose = ",".join(conf.exposeHeaders)
        self.max_age = conf.maxAge
        self.credentials = conf.allowCredentials

    def allow_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None when it is not allowed."""
        if not origin:
            return None
        if origin.lower().rstrip("/") in self.origins:
            return origin
        if self.any_origin:
            return "*"
        return None

    def preflight(self, origin: str | None, method: str, request_headers: str | None) -> LocalReply:
        headers: list[tuple[str, str]] = []
        allowed = self.allow_origin(origin)
        wanted = [h.strip().lower() for h in (request_headers or "").split(",") if h.strip()]
        method_ok = self.any_method or method.upper() in self.methods
        headers_ok = self.any_header or all(h in self.headers for h in wanted)
        if allowed is not None and method_ok and headers_ok:
            headers.append(("access-control-allow-origin", allowed))
            headers.append(("access-control-allow-methods", self.methods_text or method.upper()))
            if wanted:
                headers.append(("access-control-allow-headers", ",".join(wanted)))
            if self.max_age is not None:
                headers.append(("access-control-max-age", str(self.max_age)))
            if self.credentials:
                headers.append(("access-control-allow-credentials", "true"))
            if allowed != "*":
                headers.append(("vary", "Origin"))
        return LocalReply(204, headers)

    def decorate(self, reply: LocalReply, req: Request) -> LocalReply:
        """``reply`` with the backend's CORS headers replaced by the API's, for ``req``'s Origin."""
        return self.decorate_origin(reply, req.header("origin"))

    def decorate_origin(self, reply: LocalReply, origin: str | None) -> LocalReply:
        lines = reply.head.split(b"\r\n")
        kept = [lines[0]] + [
            line for line in lines[1:] if line and not line.lower().startswith(b"access-control-")
        ]
        allowed = self.allow_origin(origin)
        if allowed is not None:
            kept.append(b"access-control-allow-origin: " + allowed.encode("latin-1"))
            if self.credentials:
                kept.append(b"access-control-allow-credentials: true")
            if self.expose:
                kept.append(b"access-control-expose-headers: " + self.expose.encode("latin-1"))
            if allowed != "*":
                kept.append(b"vary: Origin")
        elif len(kept) == len(lines) - 1 and lines[-1] == b"":
            return reply  # nothing removed, nothing to add
        head = b"\r\n".join(kept) + b"\r\n"
        return LocalReply.raw(reply.status, head, reply.body)


def preflight_headers(fwd: list[bytes] | None) -> tuple[str | None, str | None, str | None]:
    """(Origin, Access-Control-Request-Method, Access-Control-Request-Headers) of a request's
    captured header lines (b"name: value\\r\\n")."""
    origin = method = headers = None
    for chunk in fwd or ():
        for line in chunk.split(b"\r\n"):
            name, _, value = line.partition(b": ")
            lname = name.lower()
            if lname == b"origin":
                origin = value.decode("latin-1").strip()
            elif lname == b"access-control-request-method":
                method = value.decode("latin-1").strip()
            elif lname == b"access-control-request-headers":
                text = value.decode("latin-1").strip()
                headers = text if headers is None else f"{headers},{text}"
    return origin, method, headers


__all__ = ["CorsRuntime", "preflight_headers"]
