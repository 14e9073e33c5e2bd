"""``fastgw top``: a live view of a node's traffic, per API, stage and route, from the admin ``/metrics``.

Every ``--interval`` seconds (default 2, counted from the previous answer) the command scrapes the
admin API's ``GET /metrics`` (Prometheus text, see ``fastgw.telemetry.prometheus``), diffs it
against the previous scrape and prints one row per (API, stage, route): requests/s, 4xx/s, 5xx/s,
p50 and p99 of ``Latency`` over the interval, and the cache hit ratio, sorted by requests/s,
``--limit`` rows (0: all). A header shows the node's gauges (open connections, upstream
connections in use and idle, workers reporting) and the throttled and quota-refused rates.

On a terminal each frame replaces the previous one (ANSI cursor codes, lines clipped to the
window); piped, frames follow each other as plain text. ``--once`` prints one frame (two scrapes
``--interval`` apart) and exits. ``--json`` prints a frame as JSON (indented with ``--once``, else
one document per line). Ctrl-C exits 0.

The maths are Prometheus's: a counter that went down was reset and its increase is its new value
(``increase()``), and percentiles interpolate inside the bucket deltas as ``histogram_quantile``
does. The workers publish their counts about once a second and the exposition carries no
timestamps, so the counts of a T-second frame come from the floor or the ceiling of T publishes: a
rate can be off by up to 1/T of itself (rarely for whole-second intervals, often for 1.5 s).

The connection options (``--admin``, ``--token``, ``-c``, ``--timeout``) and the exit codes (1: the
admin API refused, 2: unreachable) are those of the other admin commands (``fastgw.admin.client``).
No prometheus_client at run time: the parser is below.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from fastgw.admin.client import AdminClient, _common, _leaf

#: Metric name prefix of ``fastgw.telemetry.prometheus.exposition``.
PREFIX = "fastgw_"
DEFAULT_INTERVAL = 2.0
DEFAULT_LIMIT = 20

#: A sample's labels, sorted by name.
Labels = tuple[tuple[str, str], ...]
#: A parsed exposition: sample name -> labels -> value.
Samples = dict[str, dict[Labels, float]]

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(,?)[ \t]*')
_ESCAPE_RE = re.compile(r"\\(.)")

# RouteTotals attribute -> counter family (without the prefix).
_ROUTE_COUNTERS: tuple[tuple[str, str], ...] = (
    ("count", "Count_total"),
    ("errors_4xx", "4XXError_total"),
    ("errors_5xx", "5XXError_total"),
    ("cache_hits", "CacheHitCount_total"),
    ("cache_misses", "CacheMissCount_total"),
)
_LATENCY_BUCKET = "Latency_milliseconds_bucket"


# ----------------------------------------------------------------------------- parsing


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_exposition(text: str) -> Samples:
    """Parse Prometheus text format 0.0.4 into ``{sample name: {labels: value}}``.

    Comments (``# HELP``, ``# TYPE``, others) and blank lines are skipped, timestamps are
    dropped, and label values are unescaped (``\\\\``, ``\\"``, ``\\n``). A repeated series keeps
    its last value. Raises ValueError, with the line number, on a malformed line.
    """
    out: Samples = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _NAME_RE.match(line)
        if m is None:
            raise ValueError(f"metrics line {lineno}: no metric name: {raw!r}")
        name, pos = m.group(), m.end()
        labels: list[tuple[str, str]] = []
        if line.startswith("{", pos):
            pos += 1
            while True:
                while line.startswith((" ", "\t"), pos):
                    pos += 1
                if line.startswith("}", pos):
                    pos += 1
                    break
                lm = _LABEL_RE.match(line, pos)
                if lm is None:
                    raise ValueError(f"metrics line {lineno}: bad label at column {pos + 1}: {raw!r}")
                labels.append((lm.group(1), _unescape(lm.group(2))))
                pos = lm.end()
                if not lm.group(3) and not line.startswith("}", pos):
                    raise ValueError(f"metrics line {lineno}: expected ',' or '}}' at column {pos + 1}")
        fields = line[pos:].split()
        if not 1 <= len(fields) <= 2 or (pos < len(line) and line[pos] not in " \t"):
            raise ValueError(f"metrics line {lineno}: expected a value (and a timestamp): {raw!r}")
        try:
            value = float(fields[0])
        except ValueError:
            raise ValueError(f"metrics line {lineno}: bad value {fields[0]!r}") from None
        out.setdefault(name, {})[tuple(sorted(labels))] = value
    return out


# ----------------------------------------------------------------------------- per-route totals


@dataclass(frozen=True, slots=True, order=True)
class RouteId:
    """The row key: CloudWatch's dimensions. ``route`` is ``METHOD /resource`` or the route key."""

    api: str
    stage: str
    route: str
    api_id: str


@dataclass(slots=True)
class RouteTotals:
    """One route's counters in one scrape; ``latency`` maps bucket bound (``le``) to its cumulative count."""

    count: float = 0.0
    errors_4xx: float = 0.0
    errors_5xx: float = 0.0
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)


def route_id(labels: Labels) -> RouteId:
    """The row key of a series: REST routes are ``Method Resource``, HTTP/WebSocket ones ``Route``."""
    d = dict(labels)
    route = d.get("Route")
    if route is None:
        route = f"{d.get('Method', '')} {d.get('Resource', '')}".strip()
    return RouteId(d.get("ApiName", ""), d.get("Stage", ""), route, d.get("ApiId", ""))


def route_totals(samples: Samples, prefix: str = PREFIX) -> dict[RouteId, RouteTotals]:
    """Gather each route's counters and ``Latency`` buckets from a parsed scrape."""
    out: dict[RouteId, RouteTotals] = {}

    def totals(labels: Labels) -> RouteTotals:
        rid = route_id(labels)
        t = out.get(rid)
        if t is None:
            t = out[rid] = RouteTotals()
        return t

    for attr, family in _ROUTE_COUNTERS:
        for labels, value in samples.get(prefix + family, {}).items():
            setattr(totals(labels), attr, value)
    for labels, value in samples.get(prefix + _LATENCY_BUCKET, {}).items():
        le = next((v for k, v in labels if k == "le"), None)
        if le is None:
            continue
        totals(tuple(kv for kv in labels if kv[0] != "le")).latency[float(le)] = value
    return out


# ----------------------------------------------------------------------------- maths


def increase(previous: float | None, current: float) -> float:
    """A counter's increase between two scrapes, as Prometheus counts it.

    A counter that went down was reset (a restarted node, a worker slot gone stale): its increase
    is its new value. A series absent from the previous scrape (a route added by a reload) counts
    from zero.
    """
    if previous is None or current < previous:
        return current
    return current - previous


def rate(previous: float | None, current: float, seconds: float) -> float:
    """Per-second ``increase`` over ``seconds`` (> 0)."""
    return increase(previous, current) / seconds


def bucket_increase(
    previous: dict[float, float] | None, current: dict[float, float]
) -> list[tuple[float, float]]:
    """A histogram's cumulative bucket counts over the interval, as ``(le, count)`` sorted by ``le``.

    A histogram whose total (the largest bound's count, ``+Inf``) went down was reset: its
    increase is its current buckets.
    """
    bounds = sorted(current)
    if not bounds:
        return []
    top = bounds[-1]
    if not previous or current[top] < previous.get(top, 0.0):
        return [(le, current[le]) for le in bounds]
    return [(le, max(0.0, current[le] - previous.get(le, 0.0))) for le in bounds]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0..1) of cumulative ``(le, count)`` buckets, as Prometheus computes it.

    The rank ``q * total`` is located in the first bucket whose cumulative count reaches it and
    interpolated linearly between that bucket's bounds (the first bucket starts at 0). A rank in
    the ``+Inf`` bucket gives the highest finite bound. Counts that go down are raised to keep
    the buckets monotonic. None when there are no observations or no ``+Inf`` bucket.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    cum: list[float] = []
    for _, count in ordered:
        cum.append(max(count, cum[-1]) if cum else count)
    total = cum[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(cum) if c >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    upper = ordered[b][0]
    if b == 0 and upper <= 0:
        return upper
    lower = ordered[b - 1][0] if b else 0.0
    below = cum[b - 1] if b else 0.0
    in_bucket = cum[b] - below
    if in_bucket <= 0:  # only for q == 0 over empty leading buckets
        return lower
    return lower + (upper - lower) * (rank - below) / in_bucket


# ----------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Scrape:
    """One parsed ``/metrics`` answer and when it arrived (monotonic seconds)."""

    time: float
    samples: Samples


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One route's activity over an interval."""

    id: RouteId
    requests: float
    requests_per_s: float
    errors_4xx_per_s: float
    errors_5xx_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    cache_hit_ratio: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "api": self.id.api,
            "api_id": self.id.api_id,
            "stage": self.id.stage,
            "route": self.id.route,
            "requests": _plain(self.requests),
            "requests_per_s": _round(self.requests_per_s),
            "errors_4xx_per_s": _round(self.errors_4xx_per_s),
            "errors_5xx_per_s": _round(self.errors_5xx_per_s),
            "p50_ms": _round(self.p50_ms),
            "p99_ms": _round(self.p99_ms),
            "cache_hit_ratio": _round(self.cache_hit_ratio),
        }


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """The header: node gauges now, and node-wide rates over the interval (None: not exported)."""

    active_connections: float | None
    upstream_in_use: float | None
    upstream_idle: float | None
    workers_reporting: float | None
    throttled_per_s: float | None
    quota_refused_per_s: float | None
    requests_per_s: float
    errors_4xx_per_s: float
    errors_5xx_per_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "active_connections": _plain(self.active_connections),
            "upstream_connections_in_use": _plain(self.upstream_in_use),
            "upstream_connections_idle": _plain(self.upstream_idle),
            "workers_reporting": _plain(self.workers_reporting),
            "throttled_per_s": _round(self.throttled_per_s),
            "quota_refused_per_s": _round(self.quota_refused_per_s),
            "requests_per_s": _round(self.requests_per_s),
            "errors_4xx_per_s": _round(self.errors_4xx_per_s),
            "errors_5xx_per_s": _round(self.errors_5xx_per_s),
        }


@dataclass(frozen=True, slots=True)
class Frame:
    """What one refresh shows: ``rows`` holds every route, busiest first (``top_rows`` limits)."""

    seconds: float
    node: NodeStatus
    rows: list[RouteRow]

    def to_json(self, limit: int = 0) -> dict[str, Any]:
        return {
            "interval_seconds": _round(self.seconds),
            "routes": len(self.rows),
            "node": self.node.to_json(),
            "rows": [r.to_json() for r in top_rows(self.rows, limit)],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _plain(value: float | None) -> float | int | None:
    """Counts and gauges as JSON numbers: integral values without a ``.0``."""
    if value is not None and value.is_integer():
        return int(value)
    return value


def route_row(rid: RouteId, previous: RouteTotals | None, current: RouteTotals, seconds: float) -> RouteRow:
    """One route's row from its totals in two scrapes ``seconds`` apart."""
    p = previous
    requests = increase(None if p is None else p.count, current.count)
    hits = increase(None if p is None else p.cache_hits, current.cache_hits)
    misses = increase(None if p is None else p.cache_misses, current.cache_misses)
    buckets = bucket_increase(None if p is None else p.latency, current.latency)
    return RouteRow(
        rid,
        requests,
        requests / seconds,
        rate(None if p is None else p.errors_4xx, current.errors_4xx, seconds),
        rate(None if p is None else p.errors_5xx, current.errors_5xx, seconds),
        histogram_quantile(0.5, buckets),
        histogram_quantile(0.99, buckets),
        hits / (hits + misses) if hits + misses > 0 else None,
    )


def sort_rows(rows: Iterable[RouteRow]) -> list[RouteRow]:
    """Busiest first: requests/s, then errors/s, then by API, stage and route (a stable order)."""
    return sorted(rows, key=lambda r: (-r.requests_per_s, -(r.errors_4xx_per_s + r.errors_5xx_per_s), r.id))


def top_rows(rows: Sequence[RouteRow], limit: int) -> list[RouteRow]:
    """The first ``limit`` rows of sorted ``rows`` (``limit`` 0: all)."""
    return list(rows[:limit] if limit > 0 else rows)


def _scalar(samples: Samples, name: str) -> float | None:
    return samples.get(name, {}).get(())


def _first(samples: Samples, *names: str) -> float | None:
    for name in names:
        value = _scalar(samples, name)
        if value is not None:
            return value
    return None


def _scalar_rate(prev: Samples, cur: Samples, name: str, seconds: float) -> float | None:
    value = _scalar(cur, name)
    return None if value is None else rate(_scalar(prev, name), value, seconds)


def compute_frame(previous: Scrape, current: Scrape, prefix: str = PREFIX) -> Frame:
    """Diff two scrapes into a frame. Raises ValueError unless ``current`` is later."""
    seconds = current.time - previous.time
    if seconds <= 0:
        raise ValueError("the scrapes must be in time order")
    before = route_totals(previous.samples, prefix)
    rows = sort_rows(
        route_row(rid, before.get(rid), totals, seconds)
        for rid, totals in route_totals(current.samples, prefix).items()
    )
    prev, cur = previous.samples, current.samples
    node = NodeStatus(
        active_connections=_scalar(cur, prefix + "active_connections"),
        upstream_in_use=_first(cur, prefix + "upstream_connections_in_use", prefix + "upstream_pool_in_use"),
        upstream_idle=_first(cur, prefix + "upstream_connections_idle", prefix + "upstream_pool_idle"),
        workers_reporting=_scalar(cur, prefix + "workers_reporting"),
        throttled_per_s=_scalar_rate(prev, cur, prefix + "throttled_total", seconds),
        quota_refused_per_s=_scalar_rate(prev, cur, prefix + "quota_refused_total", seconds),
        requests_per_s=sum(r.requests_per_s for r in rows),
        errors_4xx_per_s=sum(r.errors_4xx_per_s for r in rows),
        errors_5xx_per_s=sum(r.errors_5xx_per_s for r in rows),
    )
    return Frame(seconds, node, rows)


# ----------------------------------------------------------------------------- rendering

_COLUMNS = ("REQ/S", "4XX/S", "5XX/S", "P50 MS", "P99 MS", "HIT %", "API", "STAGE", "ROUTE")
_NUMERIC = 6  # the first columns are right-aligned numbers; the names come last, so clipping cuts them


def _printable(text: str) -> str:
    # APPSEC: names come from the config (and the wire); no control characters reach the terminal.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _int(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def render_frame(frame: Frame, limit: int = DEFAULT_LIMIT, title: str = "fastgw top") -> list[str]:
    """The frame as text lines: a title, the node header, a blank line and the route table."""
    n = frame.node
    shown = top_rows(frame.rows, limit)
    lines = [
        f"{_printable(title)}  interval {frame.seconds:.1f}s  routes {len(shown)} of {len(frame.rows)}",
        f"connections {_int(n.active_connections)}  upstream {_int(n.upstream_in_use)} in use / "
        f"{_int(n.upstream_idle)} idle  workers {_int(n.workers_reporting)}  "
        f"throttled {_num(n.throttled_per_s)}/s  quota refused {_num(n.quota_refused_per_s)}/s",
        f"total {_num(n.requests_per_s)} req/s  4xx {_num(n.errors_4xx_per_s)}/s  "
        f"5xx {_num(n.errors_5xx_per_s)}/s",
        "",
    ]
    cells = [list(_COLUMNS)]
    for r in shown:
        hit = None if r.cache_hit_ratio is None else 100 * r.cache_hit_ratio
        cells.append(
            [
                _num(r.requests_per_s),
                _num(r.errors_4xx_per_s),
                _num(r.errors_5xx_per_s),
                _num(r.p50_ms),
                _num(r.p99_ms),
                _num(hit),
                _printable(r.id.api),
                _printable(r.id.stage),
                _printable(r.id.route),
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    for row in cells:
        parts = [
            c.rjust(w) if i < _NUMERIC else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def fit(lines: list[str], columns: int, rows: int) -> list[str]:
    """Clip lines to a terminal of ``columns`` x ``rows`` (the last row stays free for the cursor)."""
    return [line[:columns] for line in lines[: max(1, rows - 1)]]


# ANSI: cursor home, then each line clears its own tail and the screen below the frame is cleared,
# so a frame replaces the previous one without flashing a blank screen.
_HOME = "\x1b[H"
_CLEAR_EOL = "\x1b[K"
_CLEAR_BELOW = "\x1b[J"


def write_frame(out: TextIO, lines: list[str], tty: bool) -> None:
    if tty:
        out.write(_HOME + "".join(f"{line}{_CLEAR_EOL}\n" for line in lines) + _CLEAR_BELOW)
    else:
        out.write("\n".join(lines) + "\n\n")
    out.flush()


# ----------------------------------------------------------------------------- the loop


def run_top(
    fetch: Callable[[], str],
    *,
    interval: float = DEFAULT_INTERVAL,
    limit: int = DEFAULT_LIMIT,
    once: bool = False,
    as_json: bool = False,
    out: TextIO | None = None,
    title: str = "fastgw top",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Scrape with ``fetch`` and write a frame per scrape after the first, each scrape ``interval``
    seconds after the previous one arrived (rates divide by the measured time between them).

    Returns 0 after one frame with ``once``; otherwise runs until interrupted. Errors of ``fetch``
    (``AdminError``, ``AdminUnreachable``) and of the parser (ValueError) propagate.
    """
    out = out or sys.stdout
    tty = out.isatty() and not as_json
    text = fetch()
    previous = Scrape(clock(), parse_exposition(text))
    while True:
        # NOTE: the next scrape is due ``interval`` after the previous one arrived, so a slow
        # scrape delays the next rather than making it immediate; rates use the measured time.
        wait = previous.time + interval - clock()
        if wait > 0:
            sleep(wait)
        text = fetch()
        current = Scrape(clock(), parse_exposition(text))
        frame = compute_frame(previous, current)
        if as_json:
            doc = frame.to_json(limit)
            out.write((json.dumps(doc, indent=2) if once else json.dumps(doc)) + "\n")
            out.flush()
        else:
            lines = render_frame(frame, limit, f"{title}  {time.strftime('%H:%M:%S')}")
            if tty:
                size = shutil.get_terminal_size()
                lines = fit(lines, size.columns, size.lines)
            write_frame(out, lines, tty)
        if once:
            return 0
        previous = current


def metrics_fetcher(c: AdminClient, path: str = "/metrics") -> Callable[[], str]:
    """A function that GETs the admin API's Prometheus text, raising as ``AdminClient.request`` does."""

    def fetch() -> str:
        return c.request_bytes("GET", path, accept="text/plain").decode("utf-8")

    return fetch


def cmd_top(c: AdminClient, args: argparse.Namespace) -> int:
    try:
        return run_top(
            metrics_fetcher(c),
            interval=args.interval,
            limit=args.limit,
            once=args.once,
            as_json=args.json,
            title=f"fastgw top  {c.base_url}",
        )
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `fastgw top --json | head -1`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (all) or more, got {text!r}")
    return value


def add_top_command(sub: Any) -> None:
    """Add ``top`` to the ``fastgw`` subcommands."""
    p = _leaf(
        sub, "top", cmd_top, "live requests/s, errors and latency per route (admin /metrics)", _common()
    )
    p.add_argument(
        "--interval", type=_positive, default=DEFAULT_INTERVAL, metavar="SECONDS", help="refresh period"
    )
    p.add_argument("--limit", type=_count, default=DEFAULT_LIMIT, metavar="N", help="rows shown (0: all)")
    p.add_argument("--once", action="store_true", help="print one frame (after two scrapes) and exit")


def main(argv: Sequence[str] | None = None) -> int:
    """``fastgw top`` on its own: ``python -m fastgw.cli.top [options]``."""
    parser = argparse.ArgumentParser(prog="fastgw")
    add_top_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["top", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
