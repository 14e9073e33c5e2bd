"""The dashboard on the admin listener: its access rules (bearer token, ``?token=`` exchanged for a
session cookie, 401 otherwise), its JSON counting a real gateway's traffic exactly, its static
assets (and nothing else), and the page itself in headless Chromium: it loads, its script fetches
the data and shows the route and its request count, and a screenshot is taken.

The browser tests need Debian's ``chromium`` package (``/usr/bin/chromium``) and are skipped
without it; ``.ci/run`` installs it on CI machines.
"""

from __future__ import annotations

import fnmatch
import os
import re
import signal
import struct
import subprocess
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helpers import ADMIN_TOKEN, HOST, REPO, EchoServer, Gateway, GatewayFactory, RawConn, Response, wait_for

from fastgw.admin import dashboard
from fastgw.admin.dashboard import (
    COOKIE_NAME,
    CSP,
    SESSION_SECONDS,
    assets,
    session_value,
    snapshot,
    valid_session,
)
from fastgw.telemetry.metrics import CACHE_HIT, CACHE_MISS, LATENCY_BUCKETS_MS, NodeMetrics, RouteStats

pytestmark = pytest.mark.timeout(90)

N_ECHO = 23  # proxied to the echo upstream
N_HELLO = 7  # a MOCK
N_MISSING = 3  # a MOCK answering 404
ECHO_ROUTE = "ANY /echo/{proxy+}"
STATIC = REPO / "fastgw" / "admin" / "static"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
WINDOW = (1366, 1000)


# ----------------------------------------------------------------------------- a gateway with traffic


def config(echo_port: int) -> dict[str, Any]:
    return {
        "apis": [
            {
                "name": "shop",
                "id": "shop1",
                "routes": [
                    {
                        "route": ECHO_ROUTE,
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{echo_port}/{{proxy}}",
                        },
                    },
                    {"route": "GET /hello", "integration": {"type": "MOCK", "body": "hello"}},
                    {"route": "GET /missing", "integration": {"type": "MOCK", "status": 404, "body": "no"}},
                ],
                "stages": [{"name": "prod"}],
            }
        ]
    }


def admin(
    gw: Gateway, target: str, headers: list[tuple[str, str]] | None = None, method: str = "GET"
) -> Response:
    with RawConn(gw.admin_port) as c:
        return c.request(method, target, headers, host=f"{HOST}:{gw.admin_port}")


def bearer() -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {ADMIN_TOKEN}")]


def data_route(data: dict[str, Any], route: str) -> dict[str, Any]:
    found = [r for r in data["routes"] if r["route"] == route]
    assert len(found) == 1, [r["route"] for r in data["routes"]]
    return found[0]


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, echo_server: EchoServer) -> Gateway:
    """Two workers, and known traffic over new connections (so that both workers count some)."""
    gw = module_gateway_factory(config(echo_server.port), workers=2)
    for target, n, status in (
        ("/prod/echo/a/b?x=1", N_ECHO, 200),
        ("/prod/hello", N_HELLO, 200),
        ("/prod/missing", N_MISSING, 404),
    ):
        for _ in range(n):
            with RawConn(gw.port) as c:
                assert c.request("GET", target).status == status

    def settled() -> bool:
        resp = admin(gw, "/dashboard/data", bearer())
        if resp.status != 200:
            return False
        counts = {r["route"]: r["Count"] for r in resp.json()["routes"]}
        return counts.get(ECHO_ROUTE) == N_ECHO and counts.get("GET /missing") == N_MISSING

    assert wait_for(settled, 10.0), admin(gw, "/dashboard/data", bearer()).body[:2000]
    return gw


def session_cookie(gw: Gateway) -> str:
    resp = admin(gw, f"/dashboard?token={ADMIN_TOKEN}")
    assert resp.status == 303
    return resp.header("set-cookie").split(";")[0]  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- access


def assert_page_headers(resp: Response) -> None:
    assert resp.header("content-security-policy") == CSP
    assert "default-src 'none'" in CSP and "script-src 'self'" in CSP and "unsafe" not in CSP
    assert resp.header("cache-control") == "no-store"
    assert resp.header("x-content-type-options") == "nosniff"


@pytest.mark.parametrize(
    "target",
    ["/dashboard", "/dashboard/", "/dashboard/data", "/dashboard/static/dashboard.js", "/dashboard/nothing"],
)
def test_without_a_token_or_cookie_it_is_401(gw: Gateway, target: str) -> None:
    for headers in (
        [],
        [("Authorization", "Bearer wrong-token")],
        [("Authorization", f"Basic {ADMIN_TOKEN}")],
        [("Cookie", f"{COOKIE_NAME}=123.abc")],
        [("Cookie", f"{COOKIE_NAME}={ADMIN_TOKEN}")],  # the token itself is not a session
    ):
        resp = admin(gw, target, headers)
        assert resp.status == 401, (target, headers)
        assert resp.header("www-authenticate") == "Bearer"
        assert resp.header("set-cookie") is None
        assert_page_headers(resp)
        if target.rstrip("/") == "/dashboard":
            assert resp.header("content-type") == "text/html; charset=utf-8"
            assert b"/dashboard?token=ADMIN_TOKEN" in resp.body
        else:
            assert "token=" in resp.json()["message"]


def test_a_wrong_token_in_the_address_gets_401_and_no_cookie(gw: Gateway) -> None:
    for token in ("wrong", "", ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", "%C3%A9"):
        resp = admin(gw, f"/dashboard?token={token}")
        assert resp.status == 401, token
        assert resp.header("set-cookie") is None
        assert resp.header("location") is None


def test_the_token_is_exchanged_for_a_session_cookie(gw: Gateway) -> None:
    resp = admin(gw, f"/dashboard?token={ADMIN_TOKEN}&x=1")
    assert resp.status == 303
    assert resp.header("location") == "/dashboard"  # the token leaves the address bar
    assert_page_headers(resp)
    assert resp.header("referrer-policy") == "no-referrer"
    cookie = resp.header("set-cookie")
    assert cookie is not None
    name_value, *attrs = [p.strip() for p in cookie.split(";")]
    name, _, value = name_value.partition("=")
    assert name == COOKIE_NAME
    assert ADMIN_TOKEN not in value
    assert set(attrs) == {"Path=/dashboard", f"Max-Age={SESSION_SECONDS}", "HttpOnly", "SameSite=Strict"}

    jar = [("Cookie", f"other=1; {name_value}")]
    page = admin(gw, "/dashboard", jar)
    assert page.status == 200
    assert page.header("content-type") == "text/html; charset=utf-8"
    assert_page_headers(page)
    assert b'<script src="/dashboard/static/dashboard.js" defer></script>' in page.body
    assert b"http://" not in page.body and b"https://" not in page.body  # no CDN
    data = admin(gw, "/dashboard/data", jar)
    assert data.status == 200 and data.json()["version"] == 1
    assert admin(gw, "/dashboard/static/dashboard.css", jar).status == 200
    head = admin(gw, "/dashboard", jar, method="HEAD")
    assert head.status == 200 and head.body == b""
    # The cookie opens the dashboard only, never the rest of the admin API.
    assert admin(gw, "/metrics", jar).status == 401
    assert admin(gw, "/apikeys", jar).status == 401
    # A tampered or expired session is refused.
    expires, _, signature = value.partition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert admin(gw, "/dashboard/data", [("Cookie", f"{COOKIE_NAME}={expires}.{flipped}")]).status == 401
    later = str(int(expires) + 1)
    assert admin(gw, "/dashboard/data", [("Cookie", f"{COOKIE_NAME}={later}.{signature}")]).status == 401
    assert admin(gw, "/dashboard/data", [("Cookie", f"{COOKIE_NAME}=1.{signature}")]).status == 401
    assert ADMIN_TOKEN not in gw.stderr_text()  # the address's token is never logged


def test_the_bearer_header_works_as_on_the_rest_of_the_admin_api(gw: Gateway) -> None:
    page = admin(gw, "/dashboard", bearer())
    assert page.status == 200 and page.header("set-cookie") is None
    assert admin(gw, "/dashboard/data", bearer()).status == 200
    assert admin(gw, "/dashboard/static/dashboard.js", bearer()).status == 200


def test_only_get_and_head(gw: Gateway) -> None:
    for method in ("POST", "PUT", "DELETE"):
        resp = admin(gw, "/dashboard/data", bearer(), method=method)
        assert resp.status == 405
        assert resp.header("allow") == "GET, HEAD"


def test_sessions_expire_and_belong_to_their_token() -> None:
    token = b"a-token-0123456789"
    value = session_value(token, 2_000)
    assert valid_session(token, value, now=1_999)
    assert not valid_session(token, value, now=2_000)
    assert not valid_session(b"another-token-0123", value, now=1_000)
    for bad in ("", ".", "2000", "2000.", "x.y", "-1.abc", "2000." + "é" * 43, "9" * 20 + ".abc"):
        assert not valid_session(token, bad, now=1_000), bad
    assert token.decode() not in value


# ----------------------------------------------------------------------------- data


def test_data_counts_exactly_the_traffic_sent(gw: Gateway) -> None:
    resp = admin(gw, "/dashboard/data", bearer())
    assert resp.status == 200
    assert resp.header("content-type") == "application/json"
    assert_page_headers(resp)
    data = resp.json()
    assert data["collected"] and data["route_metrics"]
    assert data["buckets"] == list(LATENCY_BUCKETS_MS)
    assert [r["route"] for r in data["routes"]] == sorted(r["route"] for r in data["routes"])

    echo = data_route(data, ECHO_ROUTE)
    assert {k: echo[k] for k in ("ApiName", "ApiId", "Stage", "kind", "Resource", "Method")} == {
        "ApiName": "shop",
        "ApiId": "shop1",
        "Stage": "prod",
        "kind": "rest",
        "Resource": "/echo/{proxy+}",
        "Method": "ANY",
    }
    assert (echo["Count"], echo["4XXError"], echo["5XXError"]) == (N_ECHO, 0, 0)
    assert (echo["CacheHitCount"], echo["CacheMissCount"]) == (0, 0)
    assert sum(echo["latency"]) == N_ECHO and len(echo["latency"]) == len(LATENCY_BUCKETS_MS) + 1
    assert echo["IntegrationCount"] == sum(echo["integration"]) == N_ECHO
    assert echo["p50"] is not None and echo["p50"] <= echo["p99"] <= LATENCY_BUCKETS_MS[-1]
    assert echo["integration_p99"] is not None

    hello = data_route(data, "GET /hello")
    assert (hello["Count"], hello["4XXError"], hello["5XXError"]) == (N_HELLO, 0, 0)
    assert hello["IntegrationCount"] == 0
    assert hello["integration_p50"] is None
    missing = data_route(data, "GET /missing")
    assert (missing["Count"], missing["4XXError"], missing["5XXError"]) == (N_MISSING, N_MISSING, 0)

    node = data["node"]
    assert node["workers_reporting"] == 2 and node["stale_workers"] == []
    assert {"active_connections", "upstream_connections_in_use", "upstream_connections_idle"} <= set(
        node["gauges"]
    )
    assert node["counters"]["throttled"] == 0
    assert "quota_refused" in node["counters"]


def test_snapshot_of_hand_made_totals() -> None:
    node = NodeMetrics()
    rest = node.routes[("p1", "prod", "/pets/{id}", "GET")] = RouteStats(
        "pets", "p1", "rest", "prod", "/pets/{id}", "GET", "GET /pets/{id}"
    )
    http = node.routes[("h1", "$default", "$default", "")] = RouteStats(
        "lean", "h1", "http", "$default", "", "", "$default"
    )
    rest.record(200, 3.0, 2.0, CACHE_MISS)
    rest.record(200, 0.5, None, CACHE_HIT)
    rest.record(503, 40.0, 39.0, CACHE_MISS)
    http.record(429, 0.2, None)
    node.workers = [0]
    node.gauges["active_connections"] = 2.0
    node.counters["throttled"] = 1

    snap = snapshot(node, now=1234.5678)
    assert snap["time"] == 1234.568 and snap["version"] == dashboard.DATA_VERSION
    lean, pets = snap["routes"]  # sorted by API name
    assert lean["route"] == "$default" and lean["Route"] == "$default" and "Resource" not in lean
    assert (lean["Count"], lean["4XXError"]) == (1, 1)
    assert pets["route"] == "GET /pets/{id}" and "Route" not in pets
    assert (pets["Count"], pets["5XXError"], pets["CacheHitCount"], pets["CacheMissCount"]) == (3, 1, 1, 2)
    assert pets["IntegrationCount"] == 2
    assert (pets["p50"], pets["p99"]) == (3.5, 49.25)  # Prometheus's interpolation inside the buckets
    assert snap["node"] == {
        "workers_reporting": 1,
        "stale_workers": [],
        "gauges": {"active_connections": 2.0},
        "counters": {"throttled": 1},
    }
    assert not snapshot(NodeMetrics(), route_metrics=False)["route_metrics"]


# ----------------------------------------------------------------------------- static assets


def test_static_assets_are_served_with_their_types(gw: Gateway) -> None:
    types = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "index.html": "text/html"}
    for name, content_type in types.items():
        resp = admin(gw, f"/dashboard/static/{name}", bearer())
        assert resp.status == 200, name
        assert resp.header("content-type") == f"{content_type}; charset=utf-8"
        assert resp.body == (STATIC / name).read_bytes()
        assert_page_headers(resp)
    assert set(assets()) == {p.name for p in STATIC.iterdir()}


@pytest.mark.parametrize(
    "target",
    [
        "/dashboard/static/../dashboard.py",
        "/dashboard/static/../../admin/token.py",
        "/dashboard/static/..%2fdashboard.py",
        "/dashboard/static/%2e%2e/dashboard.py",
        "/dashboard/static/%2e%2e%2f%2e%2e%2fserver.py",
        "/dashboard/static//etc/passwd",
        "/dashboard/static/%2fetc%2fpasswd",
        "/dashboard/static/static/dashboard.js",
        "/dashboard/static/./dashboard.js",
        "/dashboard/static/dashboard.js%00.css",
        "/dashboard/static/DASHBOARD.JS",
        "/dashboard/static/nothing.js",
        "/dashboard/static/",
        "/dashboard/static",
        "/dashboard/../metrics",
    ],
)
def test_static_path_traversal_is_refused(gw: Gateway, target: str) -> None:
    resp = admin(gw, target, bearer())
    assert resp.status == 404, target
    assert resp.json() == {"message": "Not Found"}


def test_the_package_ships_the_assets() -> None:
    """``pip install .`` (non-editable) copies the files that ``package-data`` matches."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["fastgw"]
    for path in STATIC.iterdir():
        rel = path.relative_to(REPO / "fastgw").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel
    for path in STATIC.iterdir():  # small, no build step, nothing fetched from elsewhere
        text = path.read_text()
        assert len(text) < 40_000, path.name
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert "@import" not in text and "import(" not in text, path.name


# ----------------------------------------------------------------------------- the page in Chromium


@dataclass
class Page:
    """What the dumped DOM shows: each route row's cell texts, and the status line."""

    rows: dict[str, list[str]] = field(default_factory=dict)
    status: str = ""


class _DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._status: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-route") is not None:
            self._row = self.page.rows.setdefault(str(a["data-route"]), [])
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif a.get("id") == "status-text":
            self._status = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "span" and self._status is not None:
            self.page.status = "".join(self._status)
            self._status = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._status is not None:
            self._status.append(data)


def read_dom(html: str) -> Page:
    reader = _DomReader()
    reader.feed(html)
    return reader.page


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """Run Debian's headless Chromium with a fresh profile: ``chromium(*args) -> stdout``."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    procs: list[subprocess.Popen[str]] = []

    def run(*args: str, timeout: float = 60.0) -> str:
        profile = tmp_path / f"chromium-profile-{len(procs)}"
        cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        procs.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"chromium timed out:\n{err[-3000:]}") from None
        assert proc.returncode == 0, err[-3000:]
        return out

    yield run
    for proc in procs:  # its helper processes share its session
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_the_page_shows_the_traffic_in_chromium(gw: Gateway, chromium: Any) -> None:
    url = f"http://{HOST}:{gw.admin_port}/dashboard?token={ADMIN_TOKEN}"
    dom = chromium("--dump-dom", "--virtual-time-budget=4000", url)
    page = read_dom(dom)
    assert page.status.startswith("live"), (page.status, dom[:3000])
    # The script ran, followed the redirect with its cookie, fetched /dashboard/data and drew rows.
    assert set(page.rows) == {ECHO_ROUTE, "GET /hello", "GET /missing"}, dom[:3000]
    echo = page.rows[ECHO_ROUTE]
    assert echo[0] == ECHO_ROUTE and echo[1] == str(N_ECHO)
    assert page.rows["GET /hello"][1] == str(N_HELLO)
    missing = page.rows["GET /missing"]
    assert missing[1] == str(N_MISSING) and missing[4].startswith(str(N_MISSING))  # the 4XX column
    assert "no backend responses" in page.rows["GET /hello"][-1]
    assert "no backend responses" not in echo[-1]


def test_a_screenshot_of_the_page(gw: Gateway, chromium: Any, tmp_path: Path) -> None:
    # A few more requests, so that the page has rates to draw between its polls.
    for _ in range(5):
        with RawConn(gw.port) as c:
            c.request("GET", "/prod/hello")
    shot = tmp_path / "dashboard.png"
    url = f"http://{HOST}:{gw.admin_port}/dashboard?token={ADMIN_TOKEN}"
    chromium(
        f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=4000", url
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == WINDOW
    assert 10_000 < len(png) < 5_000_000
    # Not a blank page: the decoded pixels hold many distinct byte values (text, charts).
    idat = b"".join(chunk for kind, chunk in png_chunks(png) if kind == b"IDAT")
    assert len(set(zlib.decompress(idat))) > 64


def png_chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        yield png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
