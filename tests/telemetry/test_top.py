"""``fastgw top``: the exposition parser, the rate and percentile maths on their own, the frame loop
with a fake clock, and the command end to end against a real gateway's admin ``/metrics``."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import ADMIN_TOKEN, HOST, GatewayFactory, RawConn, closed_port, wait_for

from fastgw.admin.client import AdminClient
from fastgw.cli import top
from fastgw.cli.top import (
    RouteId,
    RouteRow,
    RouteTotals,
    Scrape,
    bucket_increase,
    compute_frame,
    histogram_quantile,
    increase,
    parse_exposition,
    rate,
    render_frame,
    route_totals,
    run_top,
    sort_rows,
    top_rows,
)
from fastgw.telemetry.metrics import CACHE_HIT, CACHE_MISS, LATENCY_BUCKETS_MS, NodeMetrics, bucket_quantile
from fastgw.telemetry.prometheus import exposition

pytestmark = pytest.mark.timeout(60)

INF = float("inf")


# ----------------------------------------------------------------------------- fixtures of text


def node() -> NodeMetrics:
    """A node with a REST route, an HTTP route with an awkward route key, gauges and counters."""
    from fastgw.telemetry.metrics import RouteStats

    n = NodeMetrics()
    n.routes[("p1", "prod", "/pets/{id}", "GET")] = RouteStats(
        "pets", "p1", "rest", "prod", "/pets/{id}", "GET", "GET /pets/{id}"
    )
    n.routes[("h1", "$default", "$default", "")] = RouteStats(
        'odd "api"\\\n', "h1", "http", "$default", "", "", "$default"
    )
    n.gauges.update(active_connections=3.0, upstream_connections_in_use=2.0, upstream_connections_idle=5.0)
    n.counters.update(throttled=10, quota_refused=4)
    n.workers = [0, 1]
    return n


PETS = RouteId("pets", "prod", "GET /pets/{id}", "p1")
ODD = RouteId('odd "api"\\\n', "$default", "$default", "h1")


# ----------------------------------------------------------------------------- parsing


def test_parse_matches_prometheus_client_on_a_real_exposition() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    n = node()
    pets = n.routes[("p1", "prod", "/pets/{id}", "GET")]
    for i in range(50):
        pets.record((200, 404, 503)[i % 3], 0.5 + i, 0.25 + i / 2, (CACHE_HIT, CACHE_MISS)[i % 2])
    text = exposition(n)
    mine = {
        (name, labels): v for name, series in parse_exposition(text).items() for labels, v in series.items()
    }
    theirs = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert mine == theirs
    assert len(mine) > 80


def test_parse_handwritten_text() -> None:
    text = (
        "# HELP fastgw_x_total A counter.\n"
        "# TYPE fastgw_x_total counter\n"
        "\n"
        'fastgw_x_total{b="2",a="1"} 7 1700000000000\n'
        'fastgw_x_total{ a = "q\\"uote" , b="back\\\\slash\\nline", } 1e3\n'
        "fastgw_g NaN\n"
        "fastgw_h +Inf\r\n"
        "fastgw_e{} -1.5\n"
        "   # an indented comment\n"
        'fastgw_x_total{b="2",a="1"} 8\n'  # a repeated series keeps its last value
    )
    s = parse_exposition(text)
    assert s["fastgw_x_total"] == {
        (("a", "1"), ("b", "2")): 8.0,
        (("a", 'q"uote'), ("b", "back\\slash\nline")): 1000.0,
    }
    assert s["fastgw_g"][()] != s["fastgw_g"][()]  # NaN
    assert s["fastgw_h"][()] == INF and s["fastgw_e"][()] == -1.5


@pytest.mark.parametrize(
    "line",
    [
        "9bad 1",
        "fastgw_x",
        "fastgw_x one",
        "fastgw_x 1 2 3",
        'fastgw_x{a="1" b="2"} 1',
        'fastgw_x{a="1"',
        "fastgw_x{a=1} 1",
        'fastgw_x{a="1"}1',
        'fastgw_x{a="unterminated} 1',
    ],
)
def test_parse_rejects_malformed_lines_with_their_number(line: str) -> None:
    with pytest.raises(ValueError, match="metrics line 2"):
        parse_exposition("fastgw_ok 1\n" + line + "\n")


def test_route_totals_keys_rest_and_http_routes() -> None:
    n = node()
    n.routes[("p1", "prod", "/pets/{id}", "GET")].record(200, 3.0, None, CACHE_HIT)
    totals = route_totals(parse_exposition(exposition(n)))
    assert set(totals) == {PETS, ODD}
    pets = totals[PETS]
    assert (pets.count, pets.cache_hits, pets.errors_4xx) == (1, 1, 0)
    assert pets.latency[5.0] == 1 and pets.latency[2.0] == 0 and pets.latency[INF] == 1
    assert sorted(pets.latency) == [*LATENCY_BUCKETS_MS, INF]


# ----------------------------------------------------------------------------- maths


def test_increase_and_rate_follow_prometheus_counter_resets() -> None:
    assert increase(10, 25) == 15
    assert increase(25, 10) == 10  # reset: the new value is the increase
    assert increase(None, 7) == 7  # a series new in this scrape counts from zero
    assert increase(5, 5) == 0
    assert rate(10, 30, 2.0) == 10.0


def test_bucket_increase_diffs_cumulative_buckets_and_detects_resets() -> None:
    prev = {1.0: 2.0, 5.0: 4.0, INF: 5.0}
    cur = {1.0: 3.0, 5.0: 9.0, INF: 12.0}
    assert bucket_increase(prev, cur) == [(1.0, 1.0), (5.0, 5.0), (INF, 7.0)]
    assert bucket_increase(None, cur) == [(1.0, 3.0), (5.0, 9.0), (INF, 12.0)]
    restarted = {1.0: 1.0, 5.0: 1.0, INF: 2.0}
    assert bucket_increase(prev, restarted) == [(1.0, 1.0), (5.0, 1.0), (INF, 2.0)]
    assert bucket_increase(prev, {}) == []


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(1.0, 0.0), (2.0, 10.0), (5.0, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, buckets) == 2.0  # rank 10: the top of the (1, 2] bucket
    assert histogram_quantile(0.75, buckets) == 3.5  # rank 15: halfway through (2, 5]
    assert histogram_quantile(0.25, buckets) == 1.5
    assert histogram_quantile(1.0, buckets) == 5.0
    # The first bucket starts at 0; a rank in +Inf gives the highest finite bound.
    assert histogram_quantile(0.5, [(10.0, 4.0), (INF, 4.0)]) == 5.0
    assert histogram_quantile(0.99, [(10.0, 1.0), (20.0, 1.0), (INF, 100.0)]) == 20.0
    # Unsorted input is sorted; counts that go down are raised (12, 12, 12), as in Prometheus.
    assert histogram_quantile(0.5, [(INF, 10.0), (2.0, 10.0), (1.0, 12.0)]) == 0.5
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None  # no observations
    assert histogram_quantile(0.5, [(1.0, 3.0), (2.0, 4.0)]) is None  # no +Inf bucket
    assert histogram_quantile(0.5, []) is None
    with pytest.raises(ValueError):
        histogram_quantile(1.5, buckets)


def test_histogram_quantile_agrees_with_the_gateways_own_estimate() -> None:
    rng = random.Random(7)
    for _ in range(300):
        counts = [rng.choice((0, 0, 1, 3, 17)) for _ in range(len(LATENCY_BUCKETS_MS) + 1)]
        cumulative, running = [], 0
        for le, c in zip([*LATENCY_BUCKETS_MS, INF], counts, strict=True):
            running += c
            cumulative.append((le, float(running)))
        for q in (0.01, 0.5, 0.9, 0.99, 1.0):
            expected = bucket_quantile(counts, q)
            got = histogram_quantile(q, cumulative)
            assert (got is None) == (expected is None)
            if got is not None:
                assert got == pytest.approx(expected)


# ----------------------------------------------------------------------------- frames


def two_scrapes() -> tuple[Scrape, Scrape]:
    n = node()
    pets = n.routes[("p1", "prod", "/pets/{id}", "GET")]
    for _ in range(40):  # before the interval: slow, must not show in its percentiles
        pets.record(200, 4000.0, 3000.0, CACHE_MISS)
    first = Scrape(100.0, parse_exposition(exposition(n)))
    for i in range(100):  # 100 requests in 4 s: 10 of them 404, 5 of them 502; 3/4 cache hits
        status = 404 if i % 10 == 0 else 502 if i % 20 == 1 else 200
        pets.record(status, 3.0 if i < 90 else 80.0, None, CACHE_MISS if i % 4 == 0 else CACHE_HIT)
    n.counters["throttled"] += 8
    n.gauges["active_connections"] = 7.0
    return first, Scrape(104.0, parse_exposition(exposition(n)))


def test_compute_frame_rates_percentiles_cache_ratio_and_header() -> None:
    frame = compute_frame(*two_scrapes())
    assert frame.seconds == 4.0
    assert [r.id for r in frame.rows] == [PETS, ODD]
    pets, odd = frame.rows
    assert (pets.requests, pets.requests_per_s) == (100, 25.0)
    assert (pets.errors_4xx_per_s, pets.errors_5xx_per_s) == (2.5, 1.25)
    assert pets.cache_hit_ratio == 0.75
    # 90 values in (2, 5] and 10 in (50, 100]: p50 at rank 50 of the 90, p99 at rank 99 of (50, 100].
    assert pets.p50_ms == pytest.approx(2 + 3 * 50 / 90)
    assert pets.p99_ms == pytest.approx(50 + 50 * 9 / 10)
    assert (odd.requests_per_s, odd.p50_ms, odd.p99_ms, odd.cache_hit_ratio) == (0, None, None, None)
    h = frame.node
    assert (h.active_connections, h.upstream_in_use, h.upstream_idle, h.workers_reporting) == (7, 2, 5, 2)
    assert (h.throttled_per_s, h.quota_refused_per_s) == (2.0, 0.0)
    assert (h.requests_per_s, h.errors_4xx_per_s, h.errors_5xx_per_s) == (25.0, 2.5, 1.25)
    doc = frame.to_json(limit=1)
    assert doc["routes"] == 2 and len(doc["rows"]) == 1
    assert doc["rows"][0] == {
        "api": "pets",
        "api_id": "p1",
        "stage": "prod",
        "route": "GET /pets/{id}",
        "requests": 100,
        "requests_per_s": 25.0,
        "errors_4xx_per_s": 2.5,
        "errors_5xx_per_s": 1.25,
        "p50_ms": round(2 + 3 * 50 / 90, 3),
        "p99_ms": 95.0,
        "cache_hit_ratio": 0.75,
    }
    assert doc["node"]["active_connections"] == 7 and doc["node"]["throttled_per_s"] == 2.0


def test_compute_frame_without_node_metrics_and_out_of_order() -> None:
    empty = Scrape(1.0, parse_exposition("fastgw_workers_reporting 0\n"))
    frame = compute_frame(empty, Scrape(2.0, empty.samples))
    assert frame.rows == [] and frame.node.workers_reporting == 0
    assert frame.node.active_connections is None and frame.node.throttled_per_s is None
    with pytest.raises(ValueError):
        compute_frame(empty, Scrape(1.0, empty.samples))


def row(api: str, rps: float, errors: float = 0.0) -> RouteRow:
    return RouteRow(RouteId(api, "prod", "GET /", api), rps, rps, errors, 0.0, None, None, None)


def test_rows_sort_by_requests_then_errors_then_name_and_limit() -> None:
    rows = sort_rows([row("c", 1.0), row("a", 1.0), row("b", 1.0, errors=0.5), row("d", 9.0), row("e", 0.0)])
    assert [r.id.api for r in rows] == ["d", "b", "a", "c", "e"]
    assert [r.id.api for r in top_rows(rows, 2)] == ["d", "b"]
    assert len(top_rows(rows, 0)) == 5 and len(top_rows(rows, 50)) == 5


def test_render_frame_puts_numbers_first_and_names_last() -> None:
    lines = render_frame(compute_frame(*two_scrapes()), limit=1, title="T")
    assert lines[0].startswith("T  interval 4.0s  routes 1 of 2")
    assert lines[1] == (
        "connections 7  upstream 2 in use / 5 idle  workers 2  throttled 2.0/s  quota refused 0.0/s"
    )
    assert lines[2] == "total 25.0 req/s  4xx 2.5/s  5xx 1.2/s"
    assert lines[4].split() == [
        "REQ/S",
        "4XX/S",
        "5XX/S",
        "P50",
        "MS",
        "P99",
        "MS",
        "HIT",
        "%",
        "API",
        "STAGE",
        "ROUTE",
    ]
    assert lines[5].split() == [
        "25.0",
        "2.5",
        "1.2",
        "3.7",
        "95.0",
        "75.0",
        "pets",
        "prod",
        "GET",
        "/pets/{id}",
    ]
    assert len(lines) == 6
    assert top.fit(["x" * 50] * 10, 20, 5) == ["x" * 20] * 4


# ----------------------------------------------------------------------------- the loop


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def fetcher(texts: list[str], clock: FakeTime | None = None, cost: float = 0.0) -> Callable[[], str]:
    it: Iterator[str] = iter(texts)

    def fetch() -> str:
        if clock is not None:
            clock.now += cost
        try:
            return next(it)
        except StopIteration:
            raise KeyboardInterrupt from None

    return fetch


def scrape_texts() -> list[str]:
    n = node()
    pets = n.routes[("p1", "prod", "/pets/{id}", "GET")]
    out = [exposition(n)]
    for _ in range(3):
        for _ in range(20):
            pets.record(200, 3.0, None)
        out.append(exposition(n))
    return out


@pytest.mark.parametrize("tty", [False, True])
def test_run_top_once_prints_one_frame(tty: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "50")
    t = FakeTime()
    out = Tty() if tty else io.StringIO()
    code = run_top(fetcher(scrape_texts(), t), interval=2.0, once=True, out=out, clock=t.clock, sleep=t.sleep)
    assert code == 0 and t.sleeps == [2.0]
    text = out.getvalue()
    assert "GET /pets/{id}" in text and "10.0" in text
    assert 'odd "api"\\\\\\n  $default' in text  # control characters are shown escaped
    assert ("\x1b[H" in text and "\x1b[J" in text) if tty else "\x1b" not in text


def test_run_top_json_once_and_streaming() -> None:
    t = FakeTime()
    out = io.StringIO()
    run_top(
        fetcher(scrape_texts()), interval=1.0, once=True, as_json=True, out=out, clock=t.clock, sleep=t.sleep
    )
    doc = json.loads(out.getvalue())
    assert doc["rows"][0]["route"] == "GET /pets/{id}" and doc["rows"][0]["requests_per_s"] == 20.0
    out = Tty()  # JSON never carries screen codes, even on a terminal
    with pytest.raises(KeyboardInterrupt):  # the fake runs out of scrapes
        run_top(
            fetcher(scrape_texts(), t, cost=3.0),
            interval=1.0,
            as_json=True,
            out=out,
            clock=t.clock,
            sleep=t.sleep,
        )
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in out.getvalue()
    # Each scrape is due 1 s after the previous one arrived; a slow (3 s) scrape stretches the
    # interval, and the rates divide by the measured 4 s.
    assert t.sleeps[-3:] == [1.0, 1.0, 1.0]
    docs = [json.loads(line) for line in lines]
    assert [d["interval_seconds"] for d in docs] == [4.0, 4.0, 4.0]
    assert [d["rows"][0]["requests_per_s"] for d in docs] == [5.0, 5.0, 5.0]


def test_command_exits_quietly_on_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(top, "metrics_fetcher", lambda c: fetcher(scrape_texts()))
    code = top.main(["--json", "--interval", "0.01", "--admin", "http://192.0.2.1:1", "--token", "t"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    assert len(captured.out.splitlines()) == 3


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--interval", "-1"], ["--limit", "-2"]])
def test_bad_options_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        top.main(argv)
    assert ex.value.code == 2
    capsys.readouterr()


# ----------------------------------------------------------------------------- end to end

CONFIG: dict[str, Any] = {
    "apis": [
        {
            "name": "shop",
            "id": "shop1",
            "routes": [
                {"route": "GET /ok", "integration": {"type": "MOCK", "body": "ok"}},
                {"route": "GET /missing", "integration": {"type": "MOCK", "status": 404, "body": "no"}},
            ],
            "stages": [{"name": "prod"}],
        }
    ]
}


def test_top_against_a_real_gateway(
    gateway_factory: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = gateway_factory(CONFIG, workers=1)
    admin = ["--admin", f"http://{HOST}:{gw.admin_port}"]
    stop = threading.Event()

    def traffic() -> None:
        with RawConn(gw.port) as c:
            while not stop.is_set():
                assert c.request("GET", "/prod/ok").status == 200
                assert c.request("GET", "/prod/missing").status == 404
                time.sleep(0.002)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        client = AdminClient(f"http://{HOST}:{gw.admin_port}", ADMIN_TOKEN)
        fetch = top.metrics_fetcher(client)

        def counted() -> bool:
            totals = route_totals(parse_exposition(fetch()))
            return totals.get(RouteId("shop", "prod", "GET /ok", "shop1"), RouteTotals()).count > 0

        assert wait_for(counted, 5.0)  # the worker has published once
        # NOTE: workers publish about once a second; 1.2 s between scrapes always spans a publish.
        options = ["--once", "--interval", "1.2", *admin, "--token", ADMIN_TOKEN]
        assert top.main(["--json", *options]) == 0
        doc = json.loads(capsys.readouterr().out)
        rows = {r["route"]: r for r in doc["rows"]}
        ok, missing = rows["GET /ok"], rows["GET /missing"]
        assert ok["api"] == "shop" and ok["stage"] == "prod" and ok["api_id"] == "shop1"
        assert ok["requests_per_s"] > 0 and ok["errors_4xx_per_s"] == 0
        assert missing["errors_4xx_per_s"] > 0 and missing["errors_5xx_per_s"] == 0
        assert ok["p50_ms"] is not None and ok["cache_hit_ratio"] is None
        assert doc["node"]["workers_reporting"] == 1 and doc["node"]["active_connections"] >= 1

        assert top.main(options) == 0
        text = capsys.readouterr().out
        assert "REQ/S" in text and "GET /ok" in text and "GET /missing" in text and "\x1b" not in text

        assert top.main([*options[:-1], "wrong-token"]) == 1
        assert "401" in capsys.readouterr().err
    finally:
        stop.set()
        thread.join(5)


def test_unreachable_admin_api_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = top.main(["--once", "--admin", f"http://{HOST}:{closed_port()}", "--token", "t", "--timeout", "2"])
    assert code == 2
    assert "cannot reach the admin API" in capsys.readouterr().err
