"""Load bench: fastgw vs nginx vs the upstream direct, with wrk (``python -m bench.load --help``).

Layout on a 2-core machine (default, pinned): core 0 runs the proxy under test (nginx with one
worker, or fastgw with one worker); core 1 runs wrk and the upstream nginx. Each (scenario,
target) is measured ``--repeat`` times, interleaved round by round, median reported. The CPU
time of the proxy's process tree per request is read from /proc/PID/stat around each run.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import report
from bench.procs import (
    ProcessSet,
    cores_busy,
    cores_snapshot,
    cpu_count,
    cpu_delta,
    cpu_snapshot,
    ensure_redis,
    ensure_tools,
    free_port,
    log,
    sigterm_as_interrupt,
)
from bench.servers import (
    BENCH_API_KEY,
    Server,
    bench_config,
    http_get,
    redis_commands,
    redis_dbsize,
    start_fastgw,
    start_nginx_proxy,
    start_redis,
    start_upstream,
)
from bench.wrk import WrkResult, run_wrk, write_script

POST_BODY = 1024 * 1024


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Scenario:
    key: str  # short id, e.g. "small@64"
    label: str  # for tables
    path: str  # request path on the upstream (targets add their prefix)
    connections: int
    script: Path | None = None


@dataclass
class Target:
    key: str
    server: Server
    prefix: str = ""  # "/prod" for the proxies
    wrk_cores: list[int] | None = None
    wrk_threads: int = 1
    # a helper process the target depends on (the Redis server): its CPU is measured apart
    side: Server | None = None
    side_counter: Callable[[], float] | None = None  # e.g. Redis's total_commands_processed


@dataclass
class Run:
    wrk: WrkResult
    cpu_user_s: float
    cpu_sys_s: float
    upstream_cpu_s: float = 0.0
    busy: dict[int, float] = field(default_factory=dict)  # per-CPU busy share during the run
    side_cpu_s: float = math.nan  # CPU of the target's side process (Redis), user + sys
    side_count: float = math.nan  # growth of the target's side counter during the run

    def _per_req(self, total: float, scale: float = 1e6) -> float:
        return total / self.wrk.requests * scale if self.wrk.requests else math.nan

    @property
    def user_us_per_req(self) -> float:
        return self._per_req(self.cpu_user_s)

    @property
    def sys_us_per_req(self) -> float:
        return self._per_req(self.cpu_sys_s)

    @property
    def side_us_per_req(self) -> float:
        return self._per_req(self.side_cpu_s)

    @property
    def side_count_per_req(self) -> float:
        return self._per_req(self.side_count, 1.0)


@dataclass
class Cell:
    """Every measured run of one (scenario, target) and their medians."""

    runs: list[Run] = field(default_factory=list)
    failed: str | None = None

    def _med(self, values: list[float]) -> float:
        vals = [v for v in values if not math.isnan(v)]
        return statistics.median(vals) if vals else math.nan

    def _med_of(self, value: Callable[[Run], float]) -> float:
        """Median over the runs that did not fail."""
        return self._med([value(r) for r in self._ok()])

    def _ok(self) -> list[Run]:
        return [r for r in self.runs if r.wrk.failure is None]

    @property
    def rps(self) -> float:
        return self._med_of(lambda r: r.wrk.rps)

    @property
    def p50(self) -> float:
        return self._med_of(lambda r: r.wrk.p50_ms)

    @property
    def p99(self) -> float:
        return self._med_of(lambda r: r.wrk.p99_ms)

    @property
    def user_us(self) -> float:
        return self._med_of(lambda r: r.user_us_per_req)

    @property
    def sys_us(self) -> float:
        return self._med_of(lambda r: r.sys_us_per_req)

    @property
    def cpu_us(self) -> float:
        """User plus system CPU per request (the sum of the two medians, the tables' "total")."""
        return self.user_us + self.sys_us

    @property
    def wrk_share(self) -> float:
        return self._med_of(lambda r: r.wrk.wrk_cpu_share)

    @property
    def side_us(self) -> float:
        return self._med_of(lambda r: r.side_us_per_req)

    @property
    def side_count(self) -> float:
        return self._med_of(lambda r: r.side_count_per_req)

    def busy_text(self) -> str:
        """Median busy share per CPU ("c0 95% c1 60%"; the average over CPUs beyond 4 of them)."""
        runs = self._ok()
        if not runs:
            return "-"
        cpus = sorted(runs[0].busy)
        if len(cpus) > 4:
            return f"avg {self._med([sum(r.busy.values()) / len(r.busy) for r in runs]):.0%}"
        return " ".join(f"c{c} {self._med([r.busy.get(c, math.nan) for r in runs]):.0%}" for c in cpus)

    @property
    def errors(self) -> int:
        return sum(r.wrk.errors for r in self.runs)

    def error_text(self) -> str:
        if self.failed:
            return "target failed"
        bad = [r for r in self.runs if r.wrk.failure or r.wrk.errors]
        if not bad:
            return "0"
        details = "; ".join(sorted({r.wrk.error_text() for r in bad}))
        return f"{self.errors} in {len(bad)}/{len(self.runs)} runs ({details})"


Results = dict[tuple[str, str], Cell]


# --------------------------------------------------------------------------- measuring


def fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def one_run(wrk: str, sc: Scenario, tg: Target, duration: float, upstream: Server | None) -> Run:
    url = tg.server.base_url() + tg.prefix + sc.path
    before = cpu_snapshot(tg.server.pid)
    up_before = cpu_snapshot(upstream.pid) if upstream is not None and upstream is not tg.server else None
    side = tg.side if tg.side is not None and tg.side.ok else None
    side_before = cpu_snapshot(side.pid) if side is not None else None
    count_before = tg.side_counter() if tg.side_counter is not None else math.nan
    cores0 = cores_snapshot()
    w = run_wrk(
        wrk, url, sc.connections, duration, threads=tg.wrk_threads, script=sc.script, cores=tg.wrk_cores
    )
    busy = cores_busy(cores0, cores_snapshot())
    after = cpu_snapshot(tg.server.pid)
    user, system = cpu_delta(before, after)
    up = 0.0
    if up_before is not None and upstream is not None:
        uu, us = cpu_delta(up_before, cpu_snapshot(upstream.pid))
        up = uu + us
    run = Run(w, user, system, up, busy)
    if side is not None and side_before is not None:
        su, ss = cpu_delta(side_before, cpu_snapshot(side.pid))
        run.side_cpu_s = su + ss
    if tg.side_counter is not None:
        run.side_count = tg.side_counter() - count_before
    return run


def measure(
    wrk: str,
    scenarios: Sequence[Scenario],
    targets: Sequence[Target],
    repeat: int,
    duration: float,
    warmup: float,
    upstream: Server | None,
) -> Results:
    """All runs, interleaved: round 1 = every scenario x target, then round 2, ..."""
    results: Results = {(s.key, t.key): Cell() for s in scenarios for t in targets}
    total = len(scenarios) * len(targets) * repeat
    done = 0
    overhead = 0.5  # seconds per run beyond its nominal duration; learnt as we go
    warmed: set[tuple[str, str]] = set()
    started = time.monotonic()
    tw = max(10, *(len(t.key) for t in targets))
    for rnd in range(1, repeat + 1):
        for sc in scenarios:
            for tg in targets:
                cell = results[(sc.key, tg.key)]
                if not tg.server.check_alive():
                    cell.failed = tg.server.error
                    done += 1
                    log(
                        f"[{done:>3}/{total}] round {rnd}/{repeat} {sc.label:<16} {tg.key:<{tw}} "
                        "skipped (target failed)"
                    )
                    continue
                if (sc.key, tg.key) not in warmed:
                    warmed.add((sc.key, tg.key))
                    if warmup > 0:
                        one_run(wrk, sc, tg, warmup, upstream)
                t0 = time.monotonic()
                run = one_run(wrk, sc, tg, duration, upstream)
                overhead = 0.7 * overhead + 0.3 * max(0.0, time.monotonic() - t0 - duration)
                cell.runs.append(run)
                done += 1
                left = total - done
                warm_left = sum(1 for s in scenarios for t in targets if (s.key, t.key) not in warmed)
                eta = left * (duration + overhead) + warm_left * (warmup + overhead)
                w = run.wrk
                status = ""
                if not math.isnan(run.side_cpu_s) and tg.side is not None:
                    status += f"  {tg.side.name} {report.fmt_num(run.side_us_per_req, 1)} us/req"
                    if not math.isnan(run.side_count):
                        status += f" {run.side_count_per_req:.2f} cmd/req"
                if w.failure:
                    status += f"  FAILED: {w.failure}"
                elif w.errors:
                    status += f"  ERRORS: {w.error_text()}"
                log(
                    f"[{done:>3}/{total}] round {rnd}/{repeat} {sc.label:<16} {tg.key:<{tw}} "
                    f"{w.rps:>9,.0f} req/s  p50 {report.fmt_ms(w.p50_ms):>6} ms  "
                    f"p99 {report.fmt_ms(w.p99_ms):>6} ms  "
                    f"cpu {report.fmt_num(run.user_us_per_req, 1)}"
                    f"+{report.fmt_num(run.sys_us_per_req, 1)} us/req  "
                    f"wrk {w.wrk_cpu_share:4.0%}{status}  | elapsed {fmt_eta(time.monotonic() - started)}"
                    f" ETA {fmt_eta(eta)}"
                )
                if not tg.server.check_alive():
                    log(f"bench: {tg.key} died during the run: {tg.server.error}")
                if tg.side is not None and not tg.side.check_alive():
                    log(f"bench: {tg.side.name} of {tg.key} died during the run: {tg.side.error}")
    for (_, tkey), cell in results.items():
        tg = next(t for t in targets if t.key == tkey)
        if tg.server.error and not cell.runs:
            cell.failed = tg.server.error
    return results


# --------------------------------------------------------------------------- tables


def results_table(scenarios: Sequence[Scenario], targets: Sequence[Target], res: Results) -> str:
    rows = []
    for sc in scenarios:
        for tg in targets:
            c = res[(sc.key, tg.key)]
            if c.failed or not c.runs:
                rows.append([sc.label, tg.key, "failed", "-", "-", "-", "-", "-", "-", "-", c.error_text()])
                continue
            flag = " (!)" if c.errors else ""
            rows.append(
                [
                    sc.label,
                    tg.key,
                    report.fmt_num(c.rps) + flag,
                    report.fmt_ms(c.p50),
                    report.fmt_ms(c.p99),
                    report.fmt_num(c.user_us, 1),
                    report.fmt_num(c.sys_us, 1),
                    report.fmt_num(c.cpu_us, 1),
                    f"{c.wrk_share:.0%}",
                    c.busy_text(),
                    c.error_text(),
                ]
            )
    return report.markdown_table(
        [
            "scenario",
            "target",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU us/req user",
            "sys",
            "total",
            "wrk CPU",
            "cores busy",
            "errors",
        ],
        rows,
        align="llrrrrrrrrl",
    )


def round_ratios(ca: Cell, cb: Cell) -> list[float]:
    """``a``/``b`` req/s of each round in which both ran (the runs of a round are back to back,
    so the machine's drift between rounds cancels out of these)."""
    out = []
    # A target that died has no runs after it died: the rounds before it pair up.
    for ra, rb in zip(ca.runs, cb.runs, strict=False):
        if ra.wrk.failure is None and rb.wrk.failure is None and rb.wrk.rps > 0:
            out.append(ra.wrk.rps / rb.wrk.rps)
    return out


def round_cells(ca: Cell, cb: Cell) -> list[str]:
    """The table cells of ``round_ratios``: their median and their range."""
    rounds = round_ratios(ca, cb)
    if not rounds:
        return ["-", "-"]
    return [f"{statistics.median(rounds):.2f}x", f"{min(rounds):.2f}-{max(rounds):.2f}"]


def ratio_table(scenarios: Sequence[Scenario], res: Results, a: str, b: str) -> str:
    """Ratios of the medians, and the median and range of the rounds' own req/s ratios."""
    rows = []
    for sc in scenarios:
        ca, cb = res.get((sc.key, a)), res.get((sc.key, b))
        if ca is None or cb is None:
            continue
        rows.append(
            [
                sc.label,
                report.fmt_ratio(ca.rps, cb.rps),
                *round_cells(ca, cb),
                report.fmt_ratio(ca.p99, cb.p99),
                report.fmt_ratio(ca.cpu_us, cb.cpu_us),
            ]
        )
    return report.markdown_table(
        [
            "scenario",
            f"{a}/{b} req/s",
            "median of rounds",
            "rounds",
            f"{a}/{b} p99",
            f"{a}/{b} CPU us/req",
        ],
        rows,
        align="lrrrrr",
    )


def print_results(table: str, ratios: str, targets: list[Target]) -> str:
    """Print a run's table, its ratio table and any failures; return the failures text."""
    print()
    print(table)
    print()
    print(ratios)
    fails = failures_text(targets)
    if fails:
        print()
        print(fails)
    return fails


def failures_text(targets: Sequence[Target]) -> str:
    out = []
    for tg in targets:
        if tg.server.error:
            out.append(f"**{tg.key} failed**:\n\n```\n{tg.server.error.strip()[-3000:]}\n```")
        if tg.side is not None and tg.side.error and tg.side.error != tg.server.error:
            out.append(f"**{tg.side.name} of {tg.key} failed**:\n\n```\n{tg.side.error.strip()[-3000:]}\n```")
    return "\n\n".join(out)


# --------------------------------------------------------------------------- modes


def standard_scenarios(tmp: Path, headers: Sequence[tuple[str, str]] = ()) -> list[Scenario]:
    """The four scenarios; ``headers`` are sent with every request (a wrk Lua script then sets them)."""
    post = write_script(tmp / "post1m.lua", method="POST", headers=headers, body_size=POST_BODY)
    get = write_script(tmp / "get.lua", headers=headers) if headers else None
    return [
        Scenario("small@64", "small GET @64", "/small", 64, get),
        Scenario("small@256", "small GET @256", "/small", 256, get),
        Scenario("16k@64", "16 KiB GET @64", "/16k", 64, get),
        Scenario("post1m@16", "1 MiB POST @16", "/upload", 16, post),
    ]


def log_plan(scenarios: Sequence[Scenario], targets: Sequence[Target], args: argparse.Namespace) -> None:
    nruns = len(scenarios) * len(targets) * args.repeat
    cells = len(scenarios) * len(targets)
    est = nruns * (args.duration + 0.6) + cells * (args.warmup + 0.6)
    log(
        f"bench: {len(scenarios)} scenarios x {len(targets)} targets x {args.repeat} repeats = "
        f"{nruns} runs of {args.duration:g}s (+{args.warmup:g}s warm-up each cell); est. {fmt_eta(est)}"
    )


def pinning(ncpu: int) -> tuple[list[int] | None, list[int] | None]:
    """(proxy cores, wrk+upstream cores): core 0 vs the rest; no pinning on a 1-core machine."""
    if ncpu < 2:
        return None, None
    return [0], list(range(1, ncpu))


def mode_standard(args: argparse.Namespace) -> int:
    nginx, wrk = ensure_tools()
    assert nginx is not None
    proxy_cores, load_cores = pinning(cpu_count())
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir, ProcessSet() as procs:
        tmp = Path(tmpdir)
        scenarios = standard_scenarios(tmp)
        if args.scenarios:
            keep = set(args.scenarios.split(","))
            scenarios = [s for s in scenarios if s.key in keep]
        upstream = start_upstream(procs, nginx, tmp, load_cores)
        if upstream.error:
            return 2
        cfg = tmp / "fastgw.yaml"
        cfg.write_text(bench_config(upstream.port))
        ngx = start_nginx_proxy(
            procs, nginx, tmp, upstream.port, 1, proxy_cores, keepalive=args.nginx_keepalive
        )
        fgw = start_fastgw(procs, "fastgw", cfg, 1, tmp, proxy_cores)
        targets = [
            Target("fastgw", fgw, "/prod", load_cores),
            Target("nginx", ngx, "/prod", load_cores),
            Target("upstream", upstream, "", load_cores),
        ]
        log_plan(scenarios, targets, args)
        res = measure(wrk, scenarios, targets, args.repeat, args.duration, args.warmup, upstream)
        info = report.machine_info(nginx, wrk)
    table = results_table(scenarios, targets, res)
    ratios = ratio_table(scenarios, res, "fastgw", "nginx")
    fails = print_results(table, ratios, targets)
    if args.no_write:
        return 0
    pin_txt = (
        f"proxy under test pinned to core {proxy_cores}, wrk and upstream nginx to cores {load_cores}"
        if proxy_cores
        else "no pinning (single core)"
    )
    body = "\n\n".join(
        filter(
            None,
            [
                "## fastgw vs nginx, one worker each",
                report.machine_md(info),
                f"Command: `{report.command_line()}`  \n"
                f"{args.repeat} runs of {args.duration:g} s per cell (interleaved, median shown), "
                f"{args.warmup:g} s warm-up; {pin_txt}. `wrk -t1`, `--latency`.",
                table,
                "Ratios (fastgw / nginx; req/s above 1 is better, p99 and CPU below 1 are better):",
                ratios,
                "`(!)`: at least one run had errors (non-2xx or socket errors); see the errors column.",
                fails,
            ],
        )
    )
    report.update_results("main", body)
    scen_labels = [s.label for s in scenarios]
    tkeys = [t.key for t in targets]
    report.write_chart(
        scen_labels,
        ["fastgw", "nginx", "upstream"],
        {(s.label, t): res[(s.key, t)].rps for s in scenarios for t in tkeys},
        {(s.label, t): res[(s.key, t)].p99 for s in scenarios for t in tkeys},
        f"fastgw vs nginx (1 worker each) vs upstream direct - {info[1][1]}, "
        f"{args.duration:g}s x {args.repeat}",
    )
    return 0


def mode_workers(args: argparse.Namespace) -> int:
    nginx, wrk = ensure_tools()
    assert nginx is not None
    ncpu = cpu_count()
    proxy_cores, load_cores = pinning(ncpu)
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir, ProcessSet() as procs:
        tmp = Path(tmpdir)
        scenarios = [s for s in standard_scenarios(tmp) if s.key in ("small@64", "small@256")]
        upstream = start_upstream(procs, nginx, tmp, load_cores)
        if upstream.error:
            return 2
        cfg = tmp / "fastgw.yaml"
        cfg.write_text(bench_config(upstream.port))
        f1 = start_fastgw(procs, "fastgw-1w", cfg, 1, tmp, proxy_cores)
        f2 = start_fastgw(procs, "fastgw-2w", cfg, 2, tmp, None)
        n2 = start_nginx_proxy(
            procs, nginx, tmp, upstream.port, 2, None, tag="nginx-2w", keepalive=args.nginx_keepalive
        )
        targets = [
            Target("fastgw-1w", f1, "/prod", load_cores),
            Target("fastgw-2w", f2, "/prod", None),
            Target("nginx-2w", n2, "/prod", None),
        ]
        res = measure(wrk, scenarios, targets, args.repeat, args.duration, args.warmup, upstream)
        info = report.machine_info(nginx, wrk)
    table = results_table(scenarios, targets, res)
    scaling = ratio_table(scenarios, res, "fastgw-2w", "fastgw-1w")
    fails = print_results(table, scaling, targets)
    if args.no_write:
        return 0
    body = "\n\n".join(
        filter(
            None,
            [
                "## Workers: fastgw with 1 and 2 workers",
                report.machine_md(info),
                f"Command: `{report.command_line()}`  \n"
                f"{args.repeat} runs of {args.duration:g} s per cell (interleaved, median shown). "
                f"fastgw-1w is pinned to core 0 with wrk on {load_cores}; fastgw-2w and nginx-2w (reference) "
                "are unpinned and wrk shares the cores with them (and with the upstream nginx, "
                "pinned to core 1), "
                "so the `wrk CPU` column tells how much of the machine the load generator itself took.",
                table,
                "Scaling (2 workers / 1 worker):",
                scaling,
                fails,
            ],
        )
    )
    report.update_results("workers", body)
    return 0


# --------------------------------------------------------------------------- traffic mode

PLAIN = "plain"
KEYED_EMBEDDED = "keys+throttle (embedded)"
KEYED_REDIS = "keys+throttle (redis)"
# The budget: share of req/s that the API key check + throttling + quota may cost against
# the same route without them (single worker).
TRAFFIC_BUDGET = {KEYED_EMBEDDED: 0.10, KEYED_REDIS: 0.20}
KEY_HEADER = "x-api-key"


def _signed(x: float, digits: int = 1) -> str:
    return "-" if math.isnan(x) else f"{x:+,.{digits}f}"


def traffic_ratio_table(scenarios: Sequence[Scenario], res: Results) -> str:
    """Each keyed target against ``plain``: req/s cost vs budget, CPU per request, Redis's share."""
    rows = []
    for sc in scenarios:
        base = res.get((sc.key, PLAIN))
        for tkey, budget in TRAFFIC_BUDGET.items():
            c = res.get((sc.key, tkey))
            if c is None or base is None:
                continue
            ratio = c.rps / base.rps if base.rps and not math.isnan(base.rps) else math.nan
            cost = 1.0 - ratio
            verdict = "-" if math.isnan(cost) else ("yes" if cost <= budget else "NO")
            if c.errors or base.errors:
                verdict += " (errors)"
            cpu, cpu_base = c.cpu_us, base.cpu_us
            rows.append(
                [
                    sc.label,
                    tkey,
                    report.fmt_ratio(c.rps, base.rps),
                    "-" if math.isnan(cost) else f"{cost:+.1%}",
                    f"{budget:.0%}",
                    verdict,
                    report.fmt_ratio(cpu, cpu_base),
                    _signed(cpu - cpu_base),
                    report.fmt_ratio(c.p99, base.p99),
                    report.fmt_num(c.side_us, 1),
                    "-" if math.isnan(c.side_count) else f"{c.side_count:.3f}",
                ]
            )
    return report.markdown_table(
        [
            "scenario",
            "target",
            "req/s vs plain",
            "req/s cost",
            "budget",
            "within",
            "CPU us/req vs plain",
            "CPU +us/req",
            "p99 vs plain",
            "redis-server CPU us/req",
            "redis cmds/req",
        ],
        rows,
        align="llrrrlrrrrr",
    )


def traffic_checks(targets: Sequence[Target], path: str) -> tuple[list[str], bool]:
    """One request with and one without the key on each target: 200 / 200 on plain, 200 / 403 keyed."""
    lines = []
    all_ok = True
    for tg in targets:
        if not tg.server.ok:
            lines.append(f"- {tg.key}: not running")
            all_ok = False
            continue
        url = tg.prefix + path
        with_key, body_key = http_get(tg.server.port, url, {KEY_HEADER: BENCH_API_KEY})
        without, body_nokey = http_get(tg.server.port, url)
        expect = 200 if tg.key == PLAIN else 403
        ok = with_key == 200 and without == expect
        all_ok = all_ok and ok
        line = (
            f"- {tg.key}: `GET {url}` with the key -> {with_key or body_key}, without -> "
            f"{without or body_nokey} (expected 200 / {expect})"
        )
        if not ok:
            answers = ((with_key, body_key, 200), (without, body_nokey, expect))
            bodies = {" ".join(b.split())[:200] for st, b, exp in answers if st != exp}
            line += " **UNEXPECTED**: " + " / ".join(f"`{b}`" for b in sorted(bodies) if b)
            assert tg.server.managed is not None
            log(f"bench: {tg.key} answers unexpectedly; its log ends with:\n{tg.server.managed.tail(15)}")
        lines.append(line)
    return lines, all_ok


def redis_notes(redis: Server, fgw: Server) -> list[str]:
    """Evidence that the Redis row used Redis: keys in it, no fallback logged by fastgw."""
    notes = []
    if redis.ok:
        n = redis_dbsize(redis.port)
        notes.append(
            f"Redis held {n} keys after the runs (buckets, quota and usage counters of the bench key)."
        )
        if n <= 0:
            notes.append("**Redis holds no key: the redis row did not use Redis.**")
    if fgw.managed is not None and fgw.managed.log_path is not None and fgw.managed.log_path.exists():
        text = fgw.managed.log_path.read_text(errors="replace")
        down = [ln for ln in text.splitlines() if "redis unreachable" in ln]
        if down:
            notes.append(
                f"**fastgw fell back to its local table {len(down)} time(s) (Redis unreachable); "
                f"those requests did not reach Redis**: `{down[0].strip()[:300]}`"
            )
    return notes


def mode_traffic(args: argparse.Namespace) -> int:
    nginx, wrk = ensure_tools()
    assert nginx is not None
    redis_bin = ensure_redis()
    proxy_cores, load_cores = pinning(cpu_count())
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir, ProcessSet() as procs:
        tmp = Path(tmpdir)
        keep = set(args.scenarios.split(",")) if args.scenarios else {"small@64"}
        # The same request (key header included) goes to every target: only the gate's work differs.
        scenarios = [s for s in standard_scenarios(tmp, [(KEY_HEADER, BENCH_API_KEY)]) if s.key in keep]
        upstream = start_upstream(procs, nginx, tmp, load_cores)
        if upstream.error:
            return 2
        if redis_bin is None:
            redis = Server("redis", 0, None, error="no redis-server or valkey-server binary found")
        else:
            redis = start_redis(procs, redis_bin, tmp, load_cores)
        configs = {
            "plain": bench_config(upstream.port),
            "embedded": bench_config(upstream.port, api_key=BENCH_API_KEY),
        }
        if redis.error is None:
            url = f"redis://127.0.0.1:{redis.port}/0"
            configs["redis"] = bench_config(upstream.port, api_key=BENCH_API_KEY, redis_url=url)
        servers: dict[str, Server] = {}
        for name, text in configs.items():
            cfg = tmp / f"fastgw-{name}.yaml"
            cfg.write_text(text)
            servers[name] = start_fastgw(procs, f"fastgw-{name}", cfg, 1, tmp, proxy_cores)
        if "redis" not in servers:
            servers["redis"] = Server(
                "fastgw-redis", 0, None, error=f"not started: redis failed ({redis.error})"
            )
        redis_port = redis.port
        targets = [
            Target(PLAIN, servers["plain"], "/prod", load_cores),
            Target(KEYED_EMBEDDED, servers["embedded"], "/prod", load_cores),
            Target(
                KEYED_REDIS,
                servers["redis"],
                "/prod",
                load_cores,
                side=redis if redis.ok else None,
                side_counter=(lambda: redis_commands(redis_port)) if redis.ok else None,
            ),
        ]
        checks, checks_ok = traffic_checks(targets, scenarios[0].path if scenarios else "/small")
        log("bench: checks before the load:\n" + "\n".join(checks))
        if not checks_ok:
            log("bench: WARNING: a target does not answer as configured; its rows will show errors")
        log_plan(scenarios, targets, args)
        res = measure(wrk, scenarios, targets, args.repeat, args.duration, args.warmup, upstream)
        notes = redis_notes(redis, servers["redis"])
        info = report.machine_info(nginx, wrk)
        if redis.ok:
            info.append(("redis", f"{redis.extra.get('version', '?')} ({redis_bin})"))
    table = results_table(scenarios, targets, res)
    ratios = traffic_ratio_table(scenarios, res)
    fails = print_results(table, ratios, targets)
    print()
    print("Checks before the load:")
    print("\n".join(checks))
    if notes:
        print()
        print("\n".join(notes))
    if args.no_write:
        return 0
    pin_txt = (
        f"every fastgw (1 worker) pinned to core {proxy_cores}; wrk, the upstream nginx and "
        f"redis-server pinned to cores {load_cores}"
        if proxy_cores
        else "no pinning (single core)"
    )
    body = "\n\n".join(
        filter(
            None,
            [
                "## Traffic management: API key + throttle + quota on the hot path",
                report.machine_md(info),
                f"Command: `{report.command_line()}`  \n"
                f"{args.repeat} runs of {args.duration:g} s per cell (interleaved, median shown), "
                f"{args.warmup:g} s warm-up; {pin_txt}. `wrk -t1`, `--latency`; every request carries "
                f"`{KEY_HEADER}` (plain ignores it).",
                "Targets (all the same route to the same upstream): **plain** = the bench config (gateway "
                "throttle only); **keys+throttle** = `apiKeyRequired: true`, a usage plan on the stage with "
                "a per-key throttle (rate/burst 1e8) and a MONTH quota of 1e12, a stage throttle (1e8): "
                "key lookup (SHA-256 + dict), three token buckets (key, route, gateway) and the quota "
                "counter per request; **(embedded)** = the node's shared-memory table, **(redis)** = "
                "`gateway.state.backend: redis` (default lease_ms 50) against the redis-server above.",
                table,
                "Against plain (budget from the issue: at most 10 % fewer req/s with the embedded "
                "backend, 20 % with Redis; `req/s cost` is 1 - req/s / plain req/s):",
                ratios,
                "Checks before the load:\n\n" + "\n".join(checks),
                "\n\n".join(notes),
                "`(!)`: at least one run had errors (non-2xx or socket errors); see the errors column.",
                fails,
            ],
        )
    )
    report.update_results("traffic", body)
    return 0


# --------------------------------------------------------------------------- telemetry mode

TEL_OFF = "no metrics"
TEL_METRICS = "metrics"
TEL_LOGS = "metrics + JSON access log"
TEL_TRACE_OFF = "metrics + tracing, sampling off"
TEL_TRACE_ALL = "metrics + tracing 100 % + OTLP"
# The budgets: share of req/s that metrics plus JSON access logs may cost (against no
# metrics), tracing with sampling off and with every request sampled and exported (against
# metrics alone, the default).
TELEMETRY_BUDGET = {
    TEL_METRICS: (TEL_OFF, 0.05),
    TEL_LOGS: (TEL_OFF, 0.05),
    TEL_TRACE_OFF: (TEL_METRICS, 0.02),
    TEL_TRACE_ALL: (TEL_METRICS, 0.25),
}


def start_span_sink(procs: ProcessSet, tmp: Path, cores: Sequence[int] | None) -> tuple[int, Path]:
    """An OTLP/HTTP receiver that counts the requests and bytes it got (``bench.span_sink``)."""
    port = free_port()
    out = tmp / "span-sink.json"
    procs.start("span-sink", [sys.executable, "-m", "bench.span_sink", str(port), str(out)], cores=cores)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return port, out


def telemetry_ratio_table(scenarios: Sequence[Scenario], res: Results) -> str:
    rows = []
    for sc in scenarios:
        for tkey, (against, budget) in TELEMETRY_BUDGET.items():
            base = res.get((sc.key, against))
            c = res.get((sc.key, tkey))
            if c is None or base is None:
                continue
            cost = 1.0 - c.rps / base.rps if base.rps and not math.isnan(base.rps) else math.nan
            verdict = "-" if math.isnan(cost) else ("yes" if cost <= budget else "NO")
            cpu, cpu_base = c.cpu_us, base.cpu_us
            rows.append(
                [
                    sc.label,
                    tkey,
                    against,
                    report.fmt_ratio(c.rps, base.rps),
                    "-" if math.isnan(cost) else f"{cost:+.1%}",
                    f"{budget:.0%}",
                    verdict,
                    _signed(c.user_us - base.user_us, 2),
                    _signed(cpu - cpu_base, 2),
                ]
            )
    return report.markdown_table(
        [
            "scenario",
            "target",
            "against",
            "req/s ratio",
            "req/s cost",
            "budget",
            "within",
            "user +us/req",
            "CPU +us/req",
        ],
        rows,
        align="lllrrrlrr",
    )


def mode_telemetry(args: argparse.Namespace) -> int:
    nginx, wrk = ensure_tools()
    assert nginx is not None
    proxy_cores, load_cores = pinning(cpu_count())
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir, ProcessSet() as procs:
        tmp = Path(tmpdir)
        keep = set(args.scenarios.split(",")) if args.scenarios else {"small@64"}
        scenarios = [s for s in standard_scenarios(tmp) if s.key in keep]
        upstream = start_upstream(procs, nginx, tmp, load_cores)
        if upstream.error:
            return 2
        access_log = tmp / "access.log"
        sink_port, sink_out = start_span_sink(procs, tmp, load_cores)
        everything = (
            f'{{sampler: always_on, endpoint: "http://127.0.0.1:{sink_port}/v1/traces", '
            "max_queue_size: 200000, max_export_batch_size: 4096, schedule_delay_ms: 200}"
        )
        configs = {
            TEL_OFF: bench_config(upstream.port, metrics=False),
            TEL_METRICS: bench_config(upstream.port),
            TEL_LOGS: bench_config(upstream.port, access_log=str(access_log)),
            TEL_TRACE_OFF: bench_config(upstream.port, tracing="{sampler: parentbased_always_off}"),
            TEL_TRACE_ALL: bench_config(upstream.port, tracing=everything),
        }
        targets = []
        for i, (name, text) in enumerate(configs.items()):
            cfg = tmp / f"fastgw-tel{i}.yaml"
            cfg.write_text(text)
            server = start_fastgw(procs, f"fastgw-tel{i}", cfg, 1, tmp, proxy_cores)
            targets.append(Target(name, server, "/prod", load_cores))
        log_plan(scenarios, targets, args)
        res = measure(wrk, scenarios, targets, args.repeat, args.duration, args.warmup, upstream)
        logged = sum(1 for _ in access_log.open()) if access_log.exists() else 0
        time.sleep(1.0)  # the last batches
        sink = json.loads(sink_out.read_text()) if sink_out.exists() else {}
        info = report.machine_info(nginx, wrk)
    table = results_table(scenarios, targets, res)
    ratios = telemetry_ratio_table(scenarios, res)
    fails = print_results(table, ratios, targets)
    print(f"\naccess log lines written: {logged:,}")
    spans_txt = f"{sink.get('requests', 0):,} OTLP requests, {sink.get('bytes', 0):,} bytes of spans received"
    print(spans_txt)
    if args.no_write:
        return 0
    body = "\n\n".join(
        filter(
            None,
            [
                "## Telemetry: metrics and access logs on the hot path",
                report.machine_md(info),
                f"Command: `{report.command_line()}`  \n"
                f"{args.repeat} runs of {args.duration:g} s per cell (interleaved, median shown), "
                f"{args.warmup:g} s warm-up; every fastgw 1 worker pinned to core {proxy_cores}, wrk "
                f"and the upstream nginx to {load_cores}.",
                "Targets (the bench config): **no metrics** = `gateway.metrics: false`; **metrics** = the "
                "default (per-route Count/4XX/5XX/latency histograms); **metrics + JSON access log** = "
                "also `accessLogSettings: {format: json}` on the stage, to a file "
                f"({logged:,} lines written); **tracing, sampling off** = `gateway.tracing: "
                "{sampler: parentbased_always_off}` (every request's headers searched for a "
                "traceparent, none sent, no span); **tracing 100 % + OTLP** = `sampler: always_on`, "
                "server + integration spans per request exported to an OTLP/HTTP sink on the load "
                f"core ({spans_txt}).",
                table,
                "Budgets from the issue: metrics plus JSON access logs cost at most 5 % of req/s "
                "(against no metrics); tracing at most 2 % with sampling off and 25 % with 100 % "
                "sampling and OTLP export (against metrics, the default):",
                ratios,
                fails,
            ],
        )
    )
    report.update_results("telemetry", body)
    return 0


# --------------------------------------------------------------------------- functions mode

FN_PROXY = "HTTP_PROXY to nginx"
FN_FUNCTION = "AWS_PROXY async function"
FN_AUTH = "function + cached TOKEN authorizer"
FN_MOCK = "MOCK (same body, no integration)"


def functions_ratio_table(scenarios: Sequence[Scenario], res: Results) -> str:
    """The function against the proxied route (budget >= 1.5x) and the authorizer's cost (<= 10 %)."""
    rows = []
    for sc in scenarios:
        proxy, fn, auth = (res.get((sc.key, k)) for k in (FN_PROXY, FN_FUNCTION, FN_AUTH))
        if proxy is not None and fn is not None:
            r = fn.rps / proxy.rps if proxy.rps else math.nan
            ok = "-" if math.isnan(r) else ("yes" if r >= 1.5 else "NO")
            rows.append(
                [
                    sc.label,
                    f"{FN_FUNCTION} vs {FN_PROXY}",
                    report.fmt_ratio(fn.rps, proxy.rps),
                    ">= 1.50x",
                    ok,
                    report.fmt_ratio(fn.cpu_us, proxy.cpu_us),
                ]
            )
        if fn is not None and auth is not None:
            cost = 1.0 - auth.rps / fn.rps if fn.rps else math.nan
            ok = "-" if math.isnan(cost) else ("yes" if cost <= 0.10 else "NO")
            rows.append(
                [
                    sc.label,
                    f"{FN_AUTH} vs {FN_FUNCTION}",
                    f"{-cost:+.1%}",
                    "cost <= 10 %",
                    ok,
                    report.fmt_ratio(auth.cpu_us, fn.cpu_us),
                ]
            )
    return report.markdown_table(
        ["scenario", "comparison", "req/s", "budget", "within", "CPU us/req ratio"], rows, align="llrrlr"
    )


def functions_headroom_table(scenarios: Sequence[Scenario], res: Results) -> str:
    """How much CPU the 1.5x budget leaves a function's own work, against what it takes.

    A function route answers locally, like the MOCK: to serve 1.5x the proxied route's
    requests/s on a saturated core it may spend ``proxy CPU / 1.5`` per request, so its work on
    top of a MOCK reply (the event, the handler, its Task, the response) gets
    ``proxy CPU / 1.5 - MOCK CPU``. ``python -m bench.function_floor`` splits that work."""
    rows = []
    for sc in scenarios:
        proxy, fn, mock = (res.get((sc.key, k)) for k in (FN_PROXY, FN_FUNCTION, FN_MOCK))
        if proxy is None or fn is None or mock is None:
            continue
        proxy_cpu = proxy.cpu_us
        mock_cpu = mock.cpu_us
        rows.append(
            [
                sc.label,
                report.fmt_ratio(mock.rps, proxy.rps),
                f"{proxy_cpu:.1f}",
                f"{mock_cpu:.1f}",
                f"{proxy_cpu / 1.5 - mock_cpu:.1f}",
                f"{fn.cpu_us - mock_cpu:.1f}",
            ]
        )
    return report.markdown_table(
        [
            "scenario",
            "MOCK vs proxy req/s",
            "proxy CPU us/req",
            "MOCK CPU us/req",
            "allowed above MOCK at 1.5x",
            "function above MOCK",
        ],
        rows,
        align="lrrrrr",
    )


def mode_functions(args: argparse.Namespace) -> int:
    from bench.functions import BENCH_TOKEN, functions_config

    nginx, wrk = ensure_tools()
    assert nginx is not None
    proxy_cores, load_cores = pinning(cpu_count())
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir, ProcessSet() as procs:
        tmp = Path(tmpdir)
        keep = set(args.scenarios.split(",")) if args.scenarios else {"small@64"}
        # Every request carries the token (the unauthenticated routes ignore it).
        scenarios = [s for s in standard_scenarios(tmp, [("Authorization", BENCH_TOKEN)]) if s.key in keep]
        upstream = start_upstream(procs, nginx, tmp, load_cores)
        if upstream.error:
            return 2
        cfg = tmp / "fastgw-functions.yaml"
        cfg.write_text(functions_config(bench_config(upstream.port)))
        fgw = start_fastgw(procs, "fastgw", cfg, 1, tmp, proxy_cores)
        targets = [
            Target(FN_PROXY, fgw, "/prod", load_cores),
            Target(FN_FUNCTION, fgw, "/prod/fn", load_cores),
            Target(FN_AUTH, fgw, "/prod/auth", load_cores),
            Target(FN_MOCK, fgw, "/prod/mock", load_cores),
        ]
        checks = []
        for tg in targets:
            status, body = http_get(fgw.port, tg.prefix + "/small", {"Authorization": BENCH_TOKEN})
            checks.append(f"- {tg.key}: `GET {tg.prefix}/small` -> {status or body}")
        status, _ = http_get(fgw.port, "/prod/auth/small")
        checks.append(f"- {FN_AUTH} without the token -> {status} (expected 401)")
        log("bench: checks before the load:\n" + "\n".join(checks))
        log_plan(scenarios, targets, args)
        res = measure(wrk, scenarios, targets, args.repeat, args.duration, args.warmup, upstream)
        info = report.machine_info(nginx, wrk)
    table = results_table(scenarios, targets, res)
    ratios = functions_ratio_table(scenarios, res)
    headroom = functions_headroom_table(scenarios, res)
    fails = print_results(table, ratios, targets)
    print()
    print(headroom)
    print()
    print("\n".join(checks))
    if args.no_write:
        return 0
    pin_txt = (
        f"fastgw (1 worker) pinned to core {proxy_cores}; wrk and the upstream nginx pinned to "
        f"cores {load_cores}"
        if proxy_cores
        else "no pinning (single core)"
    )
    body = "\n\n".join(
        filter(
            None,
            [
                "## Functions: an in-process Lambda handler vs the same reply proxied; a cached authorizer",
                report.machine_md(info),
                f"Command: `{report.command_line()}`  \n"
                f"{args.repeat} runs of {args.duration:g} s per cell (interleaved, median shown), "
                f"{args.warmup:g} s warm-up; {pin_txt}. `wrk -t1`, `--latency`; one fastgw serves the three "
                "routes; every request carries `Authorization`.",
                f"Targets: **{FN_PROXY}** = `ANY /{{proxy+}}` proxied to nginx's `/small` (100 bytes); "
                f"**{FN_FUNCTION}** = `GET /fn/{{x}}`, `AWS_PROXY` to `bench.functions:small`, an "
                "`async def` handler returning the same 100-byte JSON body (payload 1.0 event built, "
                "response parsed); "
                f"**{FN_AUTH}** = `GET /auth/{{x}}`, the same function behind a TOKEN authorizer with "
                "the default 300 s cache (one call, then hits); "
                f"**{FN_MOCK}** = `GET /mock/{{x}}`, a MOCK answering the same 100 bytes: the cost of any "
                "local reply on this machine, the floor under the function rows.",
                table,
                "Budgets from the issue: the function serves at least 1.5x the proxied route's req/s; "
                "a cached authorizer decision costs at most 10 % of the route's req/s:",
                ratios,
                "What the 1.5x budget leaves a function's own work (CPU µs per request on fastgw's "
                "core, medians): to serve 1.5x the proxied route's requests/s, a function request "
                "may cost `proxy / 1.5`; a MOCK reply is the part of it that is not the function's. "
                "`python -m bench.function_floor` splits the function's part:",
                headroom,
                "Checks before the load:\n\n" + "\n".join(checks),
                "`(!)`: at least one run had errors (non-2xx or socket errors); see the errors column.",
                fails,
            ],
        )
    )
    report.update_results("functions", body)
    return 0


# --------------------------------------------------------------------------- auth mode

AU_PLAIN = "HTTP, no auth"
AU_JWT = "HTTP, JWT authorizer (RS256, keys cached)"
AU_TLS = "HTTPS keep-alive, no auth"


def auth_ratio_table(scenarios: Sequence[Scenario], res: Results) -> str:
    rows = []
    for sc in scenarios:
        base = res.get((sc.key, AU_PLAIN))
        for key, floor in ((AU_JWT, 0.70), (AU_TLS, 0.60)):
            c = res.get((sc.key, key))
            if base is None or c is None:
                continue
            r = c.rps / base.rps if base.rps else math.nan
            ok = "-" if math.isnan(r) else ("yes" if r >= floor else "NO")
            rows.append(
                [
                    sc.label,
                    f"{key} vs {AU_PLAIN}",
                    report.fmt_ratio(c.rps, base.rps),
                    f">= {floor:.2f}x",
                    ok,
                    report.fmt_ratio(c.cpu_us, base.cpu_us),
                ]
            )
    return report.markdown_table(
        ["scenario", "comparison", "req/s", "budget", "within", "CPU us/req ratio"], rows, align="llrrlr"
    )


def mode_auth(args: argparse.Namespace) -> int:
    from bench.auth import JwksServer, auth_config, certificate

    nginx, wrk = ensure_tools()
    assert nginx is not None
    proxy_cores, load_cores = pinning(cpu_count())
    jwks = JwksServer()
    token = jwks.token()
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir, ProcessSet() as procs:
        tmp = Path(tmpdir)
        keep = set(args.scenarios.split(",")) if args.scenarios else {"small@64"}
        # Every request carries the token (the routes without auth ignore it).
        headers = [("Authorization", f"Bearer {token}")]
        scenarios = [s for s in standard_scenarios(tmp, headers) if s.key in keep]
        upstream = start_upstream(procs, nginx, tmp, load_cores)
        if upstream.error:
            return 2
        cert, key = certificate(tmp)
        tls_port = free_port()
        cfg = tmp / "fastgw-auth.yaml"
        cfg.write_text(
            auth_config(bench_config(upstream.port), jwks.url, upstream.port, (cert, key, tls_port))
        )
        fgw = start_fastgw(procs, "fastgw", cfg, 1, tmp, proxy_cores)
        tls = Server("fastgw-https", tls_port, fgw.managed, fgw.error, scheme="https")
        targets = [
            Target(AU_PLAIN, fgw, "/prod", load_cores),
            Target(AU_JWT, fgw, "/prod/jwt", load_cores),
            Target(AU_TLS, tls, "/prod", load_cores),
        ]
        checks = []
        for tg in targets[:2]:
            status, body = http_get(fgw.port, tg.prefix + "/small", dict(headers))
            checks.append(f"- {tg.key}: `GET {tg.prefix}/small` -> {status or body}")
        status, _ = http_get(fgw.port, "/prod/jwt/small")
        checks.append(f"- {AU_JWT} without the token -> {status} (expected 401)")
        log("bench: checks before the load:\n" + "\n".join(checks))
        log_plan(scenarios, targets, args)
        res = measure(wrk, scenarios, targets, args.repeat, args.duration, args.warmup, upstream)
        info = report.machine_info(nginx, wrk)
    checks.append(f"- JWKS fetched {jwks.fetches} time(s) during the whole run (keys cached)")
    jwks.close()
    table = results_table(scenarios, targets, res)
    ratios = auth_ratio_table(scenarios, res)
    fails = print_results(table, ratios, targets)
    print()
    print("\n".join(checks))
    if args.no_write:
        return 0
    body = "\n\n".join(
        filter(
            None,
            [
                "## Access control: a JWT authorizer and HTTPS against the same proxied route",
                report.machine_md(info),
                f"Command: `{report.command_line()}`  \n"
                f"{args.repeat} runs of {args.duration:g} s per cell (interleaved, median shown), "
                f"{args.warmup:g} s warm-up; fastgw (1 worker) pinned to core {proxy_cores}, wrk and the "
                f"upstream nginx to cores {load_cores}. `wrk -t1`, `--latency`; every request carries an "
                "RS256 bearer token; wrk's HTTPS connections are kept alive (handshakes only at start).",
                table,
                "Budgets from the issue: a JWT-protected route keeps at least 70 % of the req/s of the same "
                "route without auth; HTTPS keep-alive at least 60 % of plain HTTP:",
                ratios,
                "Checks:\n\n" + "\n".join(checks),
                fails,
            ],
        )
    )
    report.update_results("auth", body)
    return 0


# --------------------------------------------------------------------------- rest mode

RS_PROXY = "HTTP_PROXY"
RS_MAPPED = "HTTP + mapping templates"
RS_CACHED = "HTTP_PROXY + stage cache (hit)"
RS_NGINX = "nginx proxy_cache (hit)"
RS_SCENARIOS = ("small@64", "small@256")
# Step 5's budgets: (target, reference, the least req/s ratio target / reference).
REST_BUDGETS = ((RS_CACHED, RS_PROXY, 2.0), (RS_CACHED, RS_NGINX, 0.5), (RS_MAPPED, RS_PROXY, 0.5))
# Target -> its route in bench.rest.rest_checks.
RS_ROLES = {RS_PROXY: "proxy", RS_MAPPED: "mapped", RS_CACHED: "cached", RS_NGINX: "nginx"}


def rest_ratio_table(scenarios: Sequence[Scenario], res: Results) -> str:
    """The three budgets: req/s ratio, and the same ratio from CPU per request (what one core of
    each would serve: independent of which core was the bottleneck)."""
    rows = []
    for sc in scenarios:
        for key, ref, floor in REST_BUDGETS:
            c, base = res.get((sc.key, key)), res.get((sc.key, ref))
            if c is None or base is None:
                continue
            r = c.rps / base.rps if base.rps else math.nan
            ok = "-" if math.isnan(r) else ("yes" if r >= floor else "NO")
            if c.errors or base.errors:
                ok += " (errors)"
            cpu, cpu_base = c.cpu_us, base.cpu_us
            rows.append(
                [
                    sc.label,
                    f"{key} vs {ref}",
                    report.fmt_ratio(c.rps, base.rps),
                    *round_cells(c, base),
                    f">= {floor:.2f}x",
                    ok,
                    report.fmt_ratio(cpu, cpu_base),
                    report.fmt_ratio(cpu_base, cpu),
                ]
            )
    return report.markdown_table(
        [
            "scenario",
            "comparison",
            "req/s",
            "median of rounds",
            "rounds",
            "budget",
            "within",
            "CPU us/req ratio",
            "1 / CPU ratio",
        ],
        rows,
        align="llrrrrlrr",
    )


def _upstream_us(cell: Cell) -> float:
    """Median upstream CPU per request of a cell's runs (~0 when the requests never reach it)."""
    runs = [r for r in cell.runs if r.wrk.requests and not r.wrk.failure]
    vals = [r.upstream_cpu_s / r.wrk.requests * 1e6 for r in runs]
    return statistics.median(vals) if vals else math.nan


def mode_rest(args: argparse.Namespace) -> int:
    from bench.rest import USER_AGENT, rest_checks, rest_config, start_nginx_cache, start_rest_upstream

    nginx, wrk = ensure_tools()
    assert nginx is not None
    proxy_cores, load_cores = pinning(cpu_count())
    keep = set(args.scenarios.split(",")) if args.scenarios else {"small@64"}
    if keep - set(RS_SCENARIOS):
        log(f"bench: --rest measures {', '.join(RS_SCENARIOS)} only (the routes are GET routes)")
        return 2
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir, ProcessSet() as procs:
        tmp = Path(tmpdir)
        # wrk sends no User-Agent of its own: every request carries one (the request template reads it).
        headers = [("User-Agent", USER_AGENT)]
        scenarios = [s for s in standard_scenarios(tmp, headers) if s.key in keep]
        upstream = start_rest_upstream(procs, nginx, tmp, load_cores)
        if upstream.error:
            return 2
        cfg = tmp / "fastgw-rest.yaml"
        cfg.write_text(rest_config(bench_config(upstream.port), upstream.port))
        fgw = start_fastgw(procs, "fastgw", cfg, 1, tmp, proxy_cores)
        ngx = start_nginx_cache(procs, nginx, tmp, upstream.port, proxy_cores, args.nginx_keepalive)
        targets = [
            Target(RS_PROXY, fgw, "/prod", load_cores),
            Target(RS_MAPPED, fgw, "/prod/mapped", load_cores),
            Target(RS_CACHED, fgw, "/prod/cached", load_cores),
            Target(RS_NGINX, ngx, "/prod", load_cores),
        ]
        checks, failed = rest_checks(fgw, ngx, scenarios[0].path, dict(headers))
        log("bench: checks before the load:\n" + "\n".join(checks))
        if failed:
            if fgw.managed is not None and fgw.ok:
                log(f"bench: fastgw's log ends with:\n{fgw.managed.tail(15)}")
            log(f"bench: not loading {', '.join(sorted(failed))}: wrong answer (its rows say failed)")
        if len(failed) == len(RS_ROLES):
            return 1
        for tg in targets:
            why = failed.get(RS_ROLES[tg.key])
            if why is not None and tg.server.error is None:
                # A copy with the reason: measure() skips it, the other routes of fastgw run.
                tg.server = Server(tg.server.name, tg.server.port, tg.server.managed, f"check failed: {why}")
        log_plan(scenarios, targets, args)
        res = measure(wrk, scenarios, targets, args.repeat, args.duration, args.warmup, upstream)
        info = report.machine_info(nginx, wrk)
    for sc in scenarios:
        for key in (RS_CACHED, RS_NGINX):
            checks.append(
                f"- {key}, {sc.label}: upstream CPU {report.fmt_num(_upstream_us(res[(sc.key, key)]), 2)} "
                "us/req during the runs (hits never reach it)"
            )
    table = results_table(scenarios, targets, res)
    ratios = rest_ratio_table(scenarios, res)
    fails = print_results(table, ratios, targets)
    print()
    print("\n".join(checks))
    if args.no_write:
        return 0
    pin_txt = (
        f"fastgw (1 worker) and nginx (1 worker) pinned to core {proxy_cores}; wrk and the upstream nginx "
        f"to cores {load_cores}"
        if proxy_cores
        else "no pinning (single core)"
    )
    body = "\n\n".join(
        filter(
            None,
            [
                "## REST: the stage cache and mapping templates against the proxied route",
                report.machine_md(info),
                f"Command: `{report.command_line()}`  \n"
                f"{args.repeat} runs of {args.duration:g} s per cell (interleaved, median shown), "
                f"{args.warmup:g} s warm-up; {pin_txt}. `wrk -t1`, `--latency`; one fastgw serves the "
                f"three routes; every request carries `User-Agent: {USER_AGENT}`.",
                f"Targets: **{RS_PROXY}** = the bench route `ANY /{{proxy+}}` proxied to nginx's `/small` "
                f"(100 bytes); **{RS_MAPPED}** = `GET /mapped/{{id}}`, type `HTTP` (non-proxy) to the "
                "upstream's `/{id}.json` (100 bytes of JSON), with a request template "
                "(`$input.params('id')`, `$util.escapeJavaScript` of the User-Agent) and a `default` "
                "integration response whose template wraps the payload (`$input.path('$')`, "
                "`$input.json('$')`), excluded from the "
                f"stage cache; **{RS_CACHED}** = `GET /cached/{{proxy+}}`, the same proxy with the stage "
                "cache on (`cache: {ttl_seconds: 3600}`, memory backend; the key is method + resource "
                f"template, so all but the first request hit); **{RS_NGINX}** = nginx, one worker pinned "
                "like fastgw, `proxy_cache` in front of the same upstream (`proxy_cache_valid 200 1h`, "
                "`proxy_cache_lock on`, no revalidation, cache files in the bench's temp dir).",
                table,
                "Budgets (Step 5): a cache hit serves at least 2x the proxied route's req/s and at least "
                "50 % of nginx's cache hits; the mapped route at least 50 % of the proxied route. "
                "`1 / CPU ratio` is the req/s ratio each would reach on a saturated core of its own "
                "(reference CPU us/req / target CPU us/req): read it when `c1` (wrk) is the limit, as the "
                "req/s ratio then understates the faster target.",
                ratios,
                "Checks:\n\n" + "\n".join(checks),
                "`(!)`: at least one run had errors (non-2xx or socket errors); see the errors column.",
                fails,
            ],
        )
    )
    report.update_results("rest", body)
    return 0


# --------------------------------------------------------------------------- user mode


@dataclass
class UserRequest:
    method: str
    path: str
    body_file: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


class _RequestAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        value: object,
        option: str | None = None,
    ) -> None:
        reqs: list[UserRequest] = ns.requests if ns.requests is not None else []
        parts = str(value).split(None, 1)
        if len(parts) != 2 or not parts[1].startswith("/"):
            parser.error(f"--request wants 'METHOD /path', got {value!r}")
        reqs.append(UserRequest(parts[0].upper(), parts[1]))
        ns.requests = reqs


class _BodyAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        ns: argparse.Namespace,
        value: object,
        option: str | None = None,
    ) -> None:
        if not ns.requests:
            parser.error("--body-file must follow the --request it belongs to")
        path = Path(str(value))
        if not path.is_file():
            parser.error(f"--body-file {path}: no such file")
        ns.requests[-1].body_file = path.resolve()


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return vals


def mode_user(args: argparse.Namespace) -> int:
    _, wrk = ensure_tools(need_nginx=False)
    config = Path(args.config).resolve()
    if not config.is_file():
        log(f"bench: --config {config}: no such file")
        return 2
    requests: list[UserRequest] = args.requests or []
    if not requests:
        log("bench: --config needs at least one --request 'METHOD /path'")
        return 2
    headers: list[tuple[str, str]] = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep:
            log(f"bench: --header wants 'Name: value', got {h!r}")
            return 2
        headers.append((name.strip(), value.strip()))
    ncpu = cpu_count()
    worker_counts: list[int] = args.workers or [1]
    conns: list[int] = args.connections or [64]
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="fastgw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        scenarios = []
        for i, rq in enumerate(requests):
            script = write_script(
                tmp / f"req{i}.lua", method=rq.method, headers=headers, body_file=rq.body_file
            )
            for c in conns:
                scenarios.append(Scenario(f"r{i}@{c}", f"{rq.label} @{c}", rq.path, c, script))
        for w in worker_counts:
            # pin the gateway to the first W cores and wrk to the others while that leaves wrk a core
            gw_cores = list(range(w)) if w < ncpu else None
            wrk_cores = list(range(w, ncpu)) if w < ncpu else None
            with ProcessSet() as procs:
                srv = start_fastgw(procs, f"fastgw-{w}w", config, w, tmp, gw_cores)
                if srv.error:
                    for sc in scenarios:
                        rows.append(
                            [sc.label, str(w), "failed", "-", "-", "-", "-", "fastgw failed to start"]
                        )
                    continue
                threads = len(wrk_cores) if wrk_cores else max(1, ncpu // 2)
                tg = Target(f"{w}w", srv, "", wrk_cores, wrk_threads=min(threads, min(conns)))
                res = measure(wrk, scenarios, [tg], args.repeat, args.duration, args.warmup, None)
            for sc in scenarios:
                c = res[(sc.key, tg.key)]
                if c.failed or not c.runs:
                    rows.append([sc.label, str(w), "failed", "-", "-", "-", "-", c.error_text()])
                    continue
                rows.append(
                    [
                        sc.label,
                        str(w),
                        report.fmt_num(c.rps) + (" (!)" if c.errors else ""),
                        report.fmt_ms(c.p50),
                        report.fmt_ms(c.p99),
                        report.fmt_num(c.cpu_us, 1),
                        f"{c.wrk_share:.0%}",
                        c.error_text(),
                    ]
                )
    print()
    pin_txt = "gateway pinned to the first W cores, wrk to the others" if ncpu > 1 else "no pinning"
    print(f"fastgw with {config} ({pin_txt})")
    print(
        report.markdown_table(
            ["request @conns", "workers", "req/s", "p50 ms", "p99 ms", "CPU us/req", "wrk CPU", "errors"],
            rows,
            align="lrrrrrrl",
        )
    )
    return 0


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Load bench of fastgw against nginx and the upstream direct (wrk, pinned cores).",
        epilog="See bench/README.md. Modes: the default (fastgw vs nginx), --workers-compare, --traffic, "
        "and user mode: --config YOUR.yaml --request 'GET /prod/x' [--workers 1,2].",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per (scenario, target), median reported (3)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of the uncounted warm-up run per cell (2)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repeat of 3 s, 1 s warm-up")
    p.add_argument(
        "--no-write", action="store_true", help="do not write bench/RESULTS.md and bench/results.png"
    )
    p.add_argument(
        "--scenarios",
        help="only these scenarios (comma list of small@64,small@256,16k@64,post1m@16; --traffic: small@64)",
    )
    p.add_argument(
        "--nginx-keepalive",
        type=int,
        default=512,
        help="idle upstream connections nginx keeps (`keepalive N` of its upstream block; 512, "
        "equal to fastgw's default gateway.upstream.max_idle, so neither churns connections at 256 clients)",
    )
    p.add_argument(
        "--workers-compare",
        action="store_true",
        help="small GET @64/@256 against fastgw with 1 and 2 workers (section of RESULTS.md)",
    )
    p.add_argument(
        "--telemetry",
        action="store_true",
        help="cost of metrics and access logs: small GET @64 (or --scenarios) against three fastgw, 1 "
        "worker each: metrics off, on (the default), on with a JSON access log to a file; section "
        "'telemetry' of RESULTS.md",
    )
    p.add_argument(
        "--traffic",
        action="store_true",
        help="cost of traffic management: small GET @64 (or --scenarios) against three fastgw, 1 worker "
        "each: plain, API key + throttles + quota with the embedded backend, and the same with Redis "
        "(a redis-server started on the load core); ratios against plain, section 'traffic' of RESULTS.md "
        "(~2 min; --quick ~20 s)",
    )
    p.add_argument(
        "--auth",
        action="store_true",
        help="a JWT-protected route and HTTPS keep-alive against the same proxied route: small GET @64 "
        "on one fastgw, 1 worker; section 'auth' of RESULTS.md",
    )
    p.add_argument(
        "--functions",
        action="store_true",
        help="an in-process async function vs the same reply proxied to nginx, and a cached TOKEN "
        "authorizer's cost: small GET @64 (or --scenarios) on one fastgw, 1 worker; section 'functions' "
        "of RESULTS.md",
    )
    p.add_argument(
        "--rest",
        action="store_true",
        help="REST features against the proxied route: a stage cache hit (vs the route and vs nginx "
        "proxy_cache) and an HTTP integration with mapping templates: small GET @64 (or --scenarios "
        "small@64,small@256) on one fastgw, 1 worker; section 'rest' of RESULTS.md",
    )
    g = p.add_argument_group("user mode (size your own deployment; no nginx, no upstream started)")
    g.add_argument("--config", help="your fastgw config; listen and workers are overridden per run")
    g.add_argument(
        "--request",
        dest="requests",
        action=_RequestAction,
        metavar="'METHOD /path'",
        help="a request to load (repeatable)",
    )
    g.add_argument("--body-file", action=_BodyAction, help="body of the preceding --request")
    g.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="header sent with every request (repeatable)",
    )
    g.add_argument("--workers", type=_int_list, metavar="1,2", help="worker counts to measure (1)")
    g.add_argument("--connections", type=_int_list, metavar="64", help="wrk connections, comma list (64)")
    p.set_defaults(requests=None)
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.duration, args.warmup = 1, 3.0, 1.0
    if args.repeat < 1 or args.duration < 1:
        p.error("--repeat and --duration must be >= 1")
    if args.config is None and (args.requests or args.workers or args.connections):
        p.error("--request/--workers/--connections belong to user mode: add --config YOUR.yaml")
    modes = (
        args.config,
        args.workers_compare,
        args.traffic,
        args.functions,
        args.auth,
        args.rest,
        args.telemetry,
    )
    if sum(map(bool, modes)) > 1:
        p.error(
            "--config, --workers-compare, --traffic, --telemetry, --functions, --auth and --rest are "
            "separate modes: pick one"
        )
    if args.scenarios:
        unknown = set(args.scenarios.split(",")) - {"small@64", "small@256", "16k@64", "post1m@16"}
        if unknown:
            p.error(f"--scenarios: unknown {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log(f"bench: {report.command_line()}")
    try:
        with sigterm_as_interrupt():
            if args.config:
                return mode_user(args)
            if args.workers_compare:
                return mode_workers(args)
            if args.traffic:
                return mode_traffic(args)
            if args.telemetry:
                return mode_telemetry(args)
            if args.functions:
                return mode_functions(args)
            if args.auth:
                return mode_auth(args)
            if args.rest:
                return mode_rest(args)
            return mode_standard(args)
    except KeyboardInterrupt:
        log("bench: interrupted; servers stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
