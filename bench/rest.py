"""What `python -m bench.load --rest` needs: the upstream with a JSON resource, nginx with
``proxy_cache`` as the cache reference, the config that adds a cached route and a mapped route
(HTTP integration with request and response templates), and the checks run before the load."""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from pathlib import Path

from bench.procs import ProcessSet, free_port, log
from bench.servers import Server, proxy_conf, start_nginx, upstream_conf

# The body of the upstream's /small.json: JSON, as long as /small (100 bytes), so the mapped
# route's response template has a payload to read.
JSON_BODY = '{"message":"fastgw bench small json","padding":"' + "x" * 50 + '"}'
assert len(JSON_BODY) == 100
# Sent by wrk with every request (wrk sends no User-Agent of its own): the request template reads it.
USER_AGENT = "fastgw-bench/1.0"
CACHE_TTL = 3600

# The mapped route's templates (AWS syntax).
REQUEST_TEMPLATE = (
    '{"id": "$input.params(\'id\')", '
    '"ua": "$util.escapeJavaScript($input.params().header.get(\'User-Agent\'))"}'
)
RESPONSE_TEMPLATE = "#set($b = $input.path('$'))\n{\"wrapped\": $input.json('$')}"


def _insert(text: str, anchor: str, extra: str, after: bool = False) -> str:
    """``text`` with ``extra`` put before (or after) the first ``anchor``; the anchor must be there."""
    if anchor not in text:
        raise RuntimeError(f"bench: {anchor.strip()!r} not found in the generated nginx config")
    return text.replace(anchor, anchor + extra if after else extra + anchor, 1)


# --------------------------------------------------------------------------- upstream


def rest_upstream_conf(tmp: Path, port: int) -> Path:
    """The bench upstream (``servers.upstream_conf``) plus ``/small.json`` (JSON_BODY) and
    ``/echo.json``, which answers the request's body (to check the request template's output)."""
    path = upstream_conf(tmp, port)
    body = JSON_BODY.replace('"', '\\"')
    extra = (
        f'    location = /small.json {{ default_type application/json; return 200 "{body}"; }}\n'
        # $request_body exists once proxy_pass has read the body into memory: pass it to
        # /echoed in a header, which returns it.
        "    location = /echo.json {\n"
        "      client_body_buffer_size 16k;\n"
        "      proxy_pass http://self/echoed;\n"
        "      proxy_method GET;\n"
        "      proxy_pass_request_body off;\n"
        '      proxy_set_header Content-Length "";\n'
        "      proxy_set_header X-Echo $request_body;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "    }\n"
        "    location = /echoed { default_type application/json; return 200 $http_x_echo; }\n"
    )
    path.write_text(_insert(path.read_text(), "    location / { return 404; }\n", extra))
    return path


def start_rest_upstream(procs: ProcessSet, nginx: str, tmp: Path, cores: Sequence[int] | None) -> Server:
    port = free_port()
    srv = start_nginx(procs, nginx, "upstream", rest_upstream_conf(tmp, port), port, tmp, cores)
    if srv.error:
        log(f"bench: upstream nginx failed: {srv.error}")
    return srv


# --------------------------------------------------------------------------- nginx proxy_cache


def nginx_cache_conf(
    tmp: Path, port: int, upstream_port: int, keepalive: int, tag: str = "nginx-cache"
) -> Path:
    """The reference proxy (``servers.proxy_conf``, one worker) with ``proxy_cache`` on /prod/:
    a 200 is kept an hour (``proxy_cache_valid 200 1h``), concurrent misses wait for the first
    (``proxy_cache_lock``), no revalidation; the cache files live in the bench's temp dir.
    ``X-Cache-Status`` tells a hit from a miss (for the checks)."""
    path = proxy_conf(tmp, port, upstream_port, 1, tag, keepalive)
    cache_dir = tmp / tag / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    text = _insert(
        path.read_text(),
        "  upstream backend {\n",
        f"  proxy_cache_path {cache_dir} levels=1:2 keys_zone=bench:1m max_size=64m inactive=2h"
        " use_temp_path=off;\n",
    )
    text = _insert(
        text,
        '      proxy_set_header Connection "";\n',
        "      proxy_cache bench;\n"
        "      proxy_cache_valid 200 1h;\n"
        "      proxy_cache_lock on;\n"
        "      proxy_cache_revalidate off;\n"
        "      add_header X-Cache-Status $upstream_cache_status;\n",
        after=True,
    )
    path.write_text(text)
    return path


def start_nginx_cache(
    procs: ProcessSet,
    nginx: str,
    tmp: Path,
    upstream_port: int,
    cores: Sequence[int] | None,
    keepalive: int,
    tag: str = "nginx-cache",
) -> Server:
    port = free_port()
    srv = start_nginx(
        procs, nginx, tag, nginx_cache_conf(tmp, port, upstream_port, keepalive, tag), port, tmp, cores
    )
    if srv.error:
        log(f"bench: {tag} failed: {srv.error}")
    return srv


# --------------------------------------------------------------------------- fastgw config


def rest_config(base: str, upstream_port: int) -> str:
    """The bench config (``ANY /{proxy+}`` proxied) plus, on the same stage:

    - ``GET /cached/{proxy+}``: the same HTTP_PROXY, cached by the stage (TTL 3600 s; the key is
      method + resource template, so every request after the first is a hit);
    - ``GET /mapped/{id}``: an HTTP (non-proxy) integration to ``/{id}.json`` of the same
      upstream, with a request template and a ``default`` integration response with a response
      template; excluded from the stage cache (``route_cache``).
    """
    up = f"http://127.0.0.1:{upstream_port}"
    mapped = {
        "type": "HTTP",
        "uri": up + "/{id}.json",
        "requestTemplates": {"application/json": REQUEST_TEMPLATE},
        "responses": {
            "default": {"statusCode": 200, "responseTemplates": {"application/json": RESPONSE_TEMPLATE}}
        },
    }
    routes = (
        '      - route: "GET /cached/{proxy+}"\n'
        f'        integration: {{type: HTTP_PROXY, uri: "{up}/{{proxy}}"}}\n'
        '      - route: "GET /mapped/{id}"\n'
        # JSON is YAML: no quoting rules to get wrong with the templates' quotes and newlines.
        f"        integration: {json.dumps(mapped)}\n"
    )
    old_stages = "    stages: [{name: prod}]\n"
    if old_stages not in base:
        raise RuntimeError("bench: the bench config's stages line changed; update bench/rest.py")
    stages = (
        "    stages:\n"
        "      - name: prod\n"
        f"        cache: {{ttl_seconds: {CACHE_TTL}}}\n"
        '        route_cache: {"GET /mapped/{id}": {enabled: false}}\n'
    )
    text = base.replace("    routes:\n", "    routes:\n" + routes, 1)
    return text.replace(old_stages, stages, 1)


# --------------------------------------------------------------------------- checks


def fetch(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int | None, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one GET; (None, {}, the error) if it failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except (OSError, http.client.HTTPException) as ex:
        return None, {}, f"{type(ex).__name__}: {ex}".encode()
    finally:
        conn.close()


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _show(status: int | None, body: bytes) -> str:
    text = " ".join(body.decode(errors="replace").split())
    return f"{status} `{text[:160]}`"


#: The routes the checks cover (keys of ``rest_checks``'s failures).
ROUTES = ("proxy", "mapped", "cached", "nginx")


def rest_checks(
    fgw: Server, ngx: Server, path: str, headers: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Each route answers 200 with the expected body before any load; the cache really hits.

    ``path``: the scenario's path (``/small``). The cached route is keyed by its resource
    template only, so ``/prod/cached/16k`` after ``/prod/cached/small`` must return the small
    body: that proves the second request was served from the cache. Returns the report lines
    and, for each route of ``ROUTES`` that failed, why (a route that fails is not loaded)."""
    from bench.servers import SMALL_BODY

    lines: list[str] = []
    failed: dict[str, str] = {}

    def check(route: str, label: str, good: bool, status: int | None, body: bytes, expected: str) -> None:
        verdict = "ok" if good else f"**UNEXPECTED** (expected {expected})"
        lines.append(f"- {label} -> {_show(status, body)}: {verdict}")
        if not good and route not in failed:
            failed[route] = f"{label} -> {_show(status, body)}, expected {expected}"

    small = SMALL_BODY.encode()
    if fgw.ok:
        st, _, body = fetch(fgw.port, "/prod" + path, headers)
        good = st == 200 and body == small
        check("proxy", f"proxy: `GET /prod{path}`", good, st, body, "200, the 100-byte body")
        st, _, body = fetch(fgw.port, "/prod/cached" + path, headers)
        check(
            "cached", f"cached: `GET /prod/cached{path}` (miss)", st == 200 and body == small, st, body, "200"
        )
        st, _, body = fetch(fgw.port, "/prod/cached/16k", headers)
        check(
            "cached",
            "cached: `GET /prod/cached/16k` (a hit: same key)",
            st == 200 and body == small,
            st,
            body,
            "200 with the cached 100-byte body, not 16 KiB",
        )
        want = {"wrapped": json.loads(JSON_BODY)}
        st, _, body = fetch(fgw.port, "/prod/mapped" + path, headers)
        check(
            "mapped",
            f"mapped: `GET /prod/mapped{path}`",
            st == 200 and _json(body) == want,
            st,
            body,
            '200 {"wrapped": <upstream JSON>}',
        )
        want_echo = {"wrapped": {"id": "echo", "ua": headers.get("User-Agent", "")}}
        st, _, body = fetch(fgw.port, "/prod/mapped/echo", headers)
        check(
            "mapped",
            "mapped: `GET /prod/mapped/echo` (the upstream echoes the request template's output)",
            st == 200 and _json(body) == want_echo,
            st,
            body,
            f"200 {json.dumps(want_echo)}",
        )
    else:
        lines.append(f"- fastgw not running: {(fgw.error or '').strip()[:300]}")
        failed.update(dict.fromkeys(("proxy", "mapped", "cached"), "fastgw not running"))
    if ngx.ok:
        statuses = []
        st, body = None, b""
        for _ in range(2):
            st, hdrs, body = fetch(ngx.port, "/prod" + path, headers)
            statuses.append(hdrs.get("x-cache-status", "?"))
        check(
            "nginx",
            f"nginx proxy_cache: `GET /prod{path}` twice, X-Cache-Status {' then '.join(statuses)}",
            st == 200 and body == small and statuses[-1] == "HIT",
            st,
            body,
            "200 and HIT the second time",
        )
    else:
        lines.append(f"- nginx proxy_cache not running: {(ngx.error or '').strip()[:300]}")
        failed["nginx"] = "nginx proxy_cache not running"
    return lines, failed
