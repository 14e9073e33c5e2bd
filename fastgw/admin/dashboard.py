"""The dashboard: a page on the admin listener with live charts of the node's metrics.

Three endpoints, GET or HEAD, served by the admin process only (never by a worker, never on the data
plane):

- ``/dashboard``: the page (``static/index.html``). ``/dashboard?token=TOKEN`` exchanges the admin
  token for a session cookie and answers 303 to ``/dashboard``, so the token leaves the address bar.
- ``/dashboard/data``: the node's totals as compact JSON (``snapshot``): per API, stage and route,
  the cumulative counts, the cumulative p50/p99 and the latency buckets; the node's gauges and
  counters. The page polls it every second and derives rates and windowed percentiles from the
  differences between answers, as ``fastgw top`` does between scrapes.
- ``/dashboard/static/<name>``: the page's script and stylesheet, from the files shipped in
  ``fastgw/admin/static``; any other name is 404 (the name is looked up, never joined to a path).

Access: ``Authorization: Bearer TOKEN`` as on the rest of the admin API, or the session cookie.
Without either, 401 (a short HTML page on ``/dashboard``, JSON elsewhere). The cookie holds no token:
its value is an expiry and an HMAC of it keyed by the admin token, so it opens the dashboard only
(``Path=/dashboard``, ``HttpOnly``, ``SameSite=Strict``), stops working when the token changes, and
expires after ``SESSION_SECONDS``. Every answer carries ``Cache-Control: no-store`` (the server adds
it to every admin response) and a ``Content-Security-Policy`` allowing the page's own origin only.

The numbers are ``fastgw.telemetry.metrics.node_totals``: what ``GET /metrics`` and ``fastgw top``
show, read when the page asks, nothing computed on the data plane.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastgw.admin.server import Raw
from fastgw.telemetry.metrics import LATENCY_BUCKETS_MS, NodeMetrics, RouteStats, node_totals
from fastgw.telemetry.node import node_directory

if TYPE_CHECKING:
    from fastgw.admin.server import AdminApp, Request

PREFIX = "/dashboard"
DATA_PATH = "/dashboard/data"
STATIC_PREFIX = "/dashboard/static/"
PAGE = "index.html"
COOKIE_NAME = "fastgw_dashboard"
SESSION_SECONDS = 12 * 3600
#: Version of ``snapshot``'s layout (the page checks it).
DATA_VERSION = 1

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# APPSEC: the page's own origin only; no inline script or style, no frames, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS: list[tuple[str, str]] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
]

UNAUTHORIZED_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fastgw dashboard: 401</title></head>
<body><h1>401 Unauthorized</h1>
<p>The fastgw dashboard needs the admin API token. Open <code>/dashboard?token=ADMIN_TOKEN</code>
once: the token is exchanged for a session cookie (12 hours) and removed from the address bar.</p>
<p>The token is <code>$FASTGW_ADMIN_TOKEN</code>, the content of <code>gateway.admin.token_file</code>,
or the generated <code>fastgw-admin.token</code> next to the state file.</p>
</body></html>
"""

Reply = tuple[int, Any, list[tuple[str, str]]]


# ---------------------------------------------------------------------- assets
@cache
def assets() -> dict[str, Raw]:
    """The shipped files by name, read once: the only names ``/dashboard/static/`` answers."""
    out: dict[str, Raw] = {}
    folder = resources.files("fastgw.admin").joinpath("static")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is not None and entry.is_file():
            out[entry.name] = Raw(entry.read_bytes(), content_type)
    return out


# ---------------------------------------------------------------------- sessions
def _signature(token: bytes, expires: int) -> str:
    mac = hmac.new(token, b"fastgw-dashboard-session:%d" % expires, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def session_value(token: bytes, expires: int) -> str:
    """The cookie value of a session that ends at ``expires`` (Unix time)."""
    return f"{expires}.{_signature(token, expires)}"


def valid_session(token: bytes, value: str, now: float | None = None) -> bool:
    """True for a cookie value made by ``session_value`` with ``token`` that has not expired."""
    expires, sep, signature = value.partition(".")
    if not sep or not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature.encode("ascii", "replace"), _signature(token, int(expires)).encode())


def cookies(req: Request) -> dict[str, str]:
    """The request's cookies (the first value of a repeated name wins, as browsers send the most
    specific path first)."""
    out: dict[str, str] = {}
    for header in req.headers.get("cookie", []):
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name not in out:
                out[name] = value.strip().strip('"')
    return out


def authorized(app: AdminApp, req: Request, token: bytes) -> bool:
    """The admin API's bearer token, or a valid dashboard session cookie."""
    if app.authorized(req):
        return True
    value = cookies(req).get(COOKIE_NAME)
    return value is not None and valid_session(token, value)


# ---------------------------------------------------------------------- data
def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def route_label(r: RouteStats) -> str:
    """The row name: ``METHOD /resource`` for REST routes, the route key for HTTP and WebSocket ones
    (``fastgw top``'s ``route_id``)."""
    if r.kind == "rest":
        return f"{r.method} {r.resource}".strip()
    return r.route_key


def route_view(r: RouteStats) -> dict[str, Any]:
    """One route's totals, keyed by AWS's metric names and CloudWatch's dimensions."""
    view: dict[str, Any] = {
        "ApiName": r.api_name,
        "ApiId": r.api_id,
        "Stage": r.stage,
        "kind": r.kind,
        "route": route_label(r),
    }
    if r.kind == "rest":
        view["Resource"], view["Method"] = r.resource, r.method
    else:
        view["Route"] = r.route_key
    view.update(
        {
            "Count": r.count,
            "4XXError": r.errors_4xx,
            "5XXError": r.errors_5xx,
            "CacheHitCount": r.cache_hits,
            "CacheMissCount": r.cache_misses,
            "p50": _ms(r.percentile("Latency", 0.5)),
            "p99": _ms(r.percentile("Latency", 0.99)),
            "IntegrationCount": r.integration_count,
            "integration_p50": _ms(r.percentile("IntegrationLatency", 0.5)),
            "integration_p99": _ms(r.percentile("IntegrationLatency", 0.99)),
            "latency": list(r.latency),
            "integration": list(r.integration),
        }
    )
    return view


def snapshot(node: NodeMetrics, *, route_metrics: bool = True, now: float | None = None) -> dict[str, Any]:
    """What ``/dashboard/data`` answers: the node's totals (cumulative) at ``now``.

    ``routes`` are sorted by API name, API id, stage and route. ``latency`` and ``integration`` are
    per-bucket counts (not cumulative) over ``buckets`` plus a last ``+Inf`` bucket. ``gauges`` and
    ``counters`` are the node's internal metrics as the workers publish them (``throttled`` and
    ``quota_refused`` are node-wide: the metrics carry no per-route count of them).
    """
    routes = sorted(node.routes.values(), key=lambda r: (r.api_name, r.api_id, r.stage, route_label(r)))
    return {
        "version": DATA_VERSION,
        "time": round(time.time() if now is None else now, 3),
        "collected": True,
        "route_metrics": route_metrics,
        "buckets": list(LATENCY_BUCKETS_MS),
        "node": {
            "workers_reporting": len(node.workers),
            "stale_workers": list(node.stale),
            "gauges": dict(sorted(node.gauges.items())),
            "counters": dict(sorted(node.counters.items())),
        },
        "routes": [route_view(r) for r in routes],
    }


# ---------------------------------------------------------------------- dispatch
def _unauthorized(page: bool) -> Reply:
    headers = [*HEADERS, ("www-authenticate", "Bearer"), ("x-amzn-ErrorType", "UnauthorizedException")]
    if page:
        return 401, Raw(UNAUTHORIZED_PAGE, CONTENT_TYPES[".html"]), headers
    return 401, {"message": "Unauthorized: open /dashboard?token=ADMIN_TOKEN"}, headers


def _not_found() -> Reply:
    return 404, {"message": "Not Found"}, list(HEADERS)


async def dispatch_dashboard(app: AdminApp, req: Request, token: bytes) -> Reply:
    """Answer a request under ``/dashboard``: (status, body, extra headers), as ``AdminApp.dispatch``."""
    if req.method not in ("GET", "HEAD"):
        return 405, {"message": "Method Not Allowed"}, [*HEADERS, ("allow", "GET, HEAD")]
    path = req.path
    if path == PREFIX:
        given = req.arg("token")
        if given is not None:
            # APPSEC: constant-time comparison; the session cookie is derived, never the token itself.
            if not hmac.compare_digest(given.encode("utf-8", "replace"), token):
                return _unauthorized(True)
            expires = int(time.time()) + SESSION_SECONDS
            cookie = (
                f"{COOKIE_NAME}={session_value(token, expires)}; Path={PREFIX}; "
                f"Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict"
            )
            return 303, None, [*HEADERS, ("location", PREFIX), ("set-cookie", cookie)]
        if not authorized(app, req, token):
            return _unauthorized(True)
        return 200, assets()[PAGE], list(HEADERS)
    if not authorized(app, req, token):
        return _unauthorized(False)
    if path == DATA_PATH:
        directory = node_directory()
        if directory is None:
            return 404, {"message": "Metrics are not collected by this process"}, list(HEADERS)
        data = snapshot(node_totals(directory), route_metrics=app.config.gateway.metrics)
        return 200, data, list(HEADERS)
    if path.startswith(STATIC_PREFIX):
        asset = assets().get(path[len(STATIC_PREFIX) :])
        if asset is not None:
            return 200, asset, list(HEADERS)
    return _not_found()
