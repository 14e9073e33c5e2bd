"""WebSocket echo: fastgw (one worker, an in-process ``$default`` echo function or a MOCK) next to
a plain ``websockets`` echo server (stock asyncio, and on uvloop), each pinned to core 0; the
client on core 1.

    python -m bench.websocket_echo [--repeat 3] [--seconds 5] [--connections 64] [--window 8] [--write]

The client is one process of raw asyncio protocols on uvloop (``bench/websocket_client.py``):
each connection keeps ``--window`` masked 16-byte text frames in flight and sends one more for
every frame that comes back. Every target is run ``--repeat`` times, interleaved (round 1 runs
every target, then round 2...), each run ``--warmup`` s unmeasured then ``--seconds`` s measured.
Prints, per target, the median messages/s with every run, the median p50/p99 round trip, the
server's CPU per message and the client's CPU share; ``--write`` puts the tables in
bench/RESULTS.md (section ``websocket``, block ``echo``).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import report
from bench.procs import (
    ProcessSet,
    cores_busy,
    cores_snapshot,
    cpu_delta,
    cpu_snapshot,
    log,
    sigterm_as_interrupt,
)
from bench.websocket_client import EchoResult, echo_run, run_loop
from bench.websocket_common import (
    LABELS,
    TARGETS,
    Started,
    foreign_load,
    io_syscalls,
    path_of,
    start_target,
    versions,
    write_block,
)

BUDGET = 0.70  # fastgw messages/s at least 70 % of the plain websockets server's


@dataclass
class EchoRun:
    res: EchoResult
    user_us: float  # server process tree CPU per message, microseconds: user
    sys_us: float  # ... and system
    busy: dict[int, float]
    writes: float  # write(2) calls of the serving process per message (NaN: not counted)
    foreign: str  # why the run looks contaminated by other work, or ""


@dataclass
class Cell:
    runs: list[EchoRun] = field(default_factory=list)
    failed: str | None = None
    retried: int = 0  # runs measured again because other work ran meanwhile

    def med(self, values: Sequence[float]) -> float:
        return statistics.median(values) if values else math.nan

    @property
    def rate(self) -> float:
        return self.med([r.res.rate for r in self.runs])

    @property
    def p50(self) -> float:
        return self.med([r.res.p50_ms for r in self.runs])

    @property
    def p99(self) -> float:
        return self.med([r.res.p99_ms for r in self.runs])

    @property
    def user_us(self) -> float:
        return self.med([r.user_us for r in self.runs])

    @property
    def sys_us(self) -> float:
        return self.med([r.sys_us for r in self.runs])

    @property
    def server_us(self) -> float:
        return self.med([r.user_us + r.sys_us for r in self.runs])

    @property
    def writes(self) -> float:
        return self.med([r.writes for r in self.runs])

    @property
    def client_cpu(self) -> float:
        return self.med([r.res.client_cpu for r in self.runs])

    def busy_text(self) -> str:
        if not self.runs:
            return "-"
        cpus = sorted(self.runs[0].busy)
        return " ".join(f"c{c} {self.med([r.busy.get(c, 0.0) for r in self.runs]):.0%}" for c in cpus)

    def runs_text(self) -> str:
        return " / ".join(f"{r.res.rate:,.0f}" for r in self.runs)

    def load_text(self) -> str:
        flagged = sum(1 for r in self.runs if r.foreign)
        parts = []
        if self.retried:
            parts.append(f"{self.retried} re-run")
        if flagged:
            parts.append(f"{flagged} kept with other load")
        return ", ".join(parts) or "none"

    def spread(self) -> str:
        rates = [r.res.rate for r in self.runs]
        if len(rates) < 2:
            return "-"
        return f"±{(max(rates) - min(rates)) / 2 / statistics.median(rates):.1%}"


def one_run(tg: Started, args: argparse.Namespace) -> EchoRun:
    snaps: dict[str, object] = {}

    def on_start() -> None:
        snaps["cpu"] = cpu_snapshot(tg.pid)
        snaps["cores"] = cores_snapshot()
        snaps["io"] = io_syscalls(tg.worker)

    def on_end() -> None:
        snaps["cpu1"] = cpu_snapshot(tg.pid)
        snaps["cores1"] = cores_snapshot()
        snaps["io1"] = io_syscalls(tg.worker)

    res = run_loop(
        lambda: echo_run(
            tg.port,
            path_of(tg.key),
            args.connections,
            args.window,
            args.seconds,
            args.warmup,
            on_start,
            on_end,
        )
    )
    user, system = cpu_delta(snaps["cpu"], snaps["cpu1"])  # type: ignore[arg-type]
    busy = cores_busy(snaps["cores"], snaps["cores1"])  # type: ignore[arg-type]
    n = max(1, res.count)
    writes = (snaps["io1"][1] - snaps["io"][1]) / n  # type: ignore[index]
    foreign = foreign_load(busy, (user + system) / res.seconds, res.client_cpu)
    return EchoRun(res, user / n * 1e6, system / n * 1e6, busy, writes if writes else math.nan, foreign)


def measure(targets: Sequence[Started], args: argparse.Namespace) -> dict[str, Cell]:
    cells = {t.key: Cell() for t in targets}
    total = len(targets) * args.repeat
    done = 0
    for rnd in range(1, args.repeat + 1):
        for tg in targets:
            cell = cells[tg.key]
            done += 1
            if not tg.alive():
                cell.failed = f"{tg.key} exited (code {tg.managed.proc.returncode}):\n{tg.managed.tail()}"
                log(f"[{done:>2}/{total}] round {rnd} {tg.key:<18} skipped: the server exited")
                continue
            for attempt in range(args.retries + 1):
                try:
                    run = one_run(tg, args)
                except (OSError, TimeoutError) as ex:
                    cell.failed = repr(ex)
                    log(f"[{done:>2}/{total}] round {rnd} {tg.key:<18} FAILED: {ex!r}")
                    break
                r = run.res
                note = f"  FAILURES: {r.failures[:3]}" if r.failures else ""
                if run.foreign:
                    note += f"  OTHER LOAD ({run.foreign})"
                log(
                    f"[{done:>2}/{total}] round {rnd} {tg.key:<18} {r.rate:>9,.0f} msg/s  "
                    f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
                    f"server {run.user_us:4.1f}+{run.sys_us:4.1f} us/msg  "
                    f"client cpu {r.client_cpu:4.0%}  "
                    + " ".join(f"c{c} {b:.0%}" for c, b in sorted(run.busy.items()))
                    + note
                )
                if not run.foreign or attempt == args.retries:
                    cell.runs.append(run)
                    break
                cell.retried += 1
                log(f"        other work on the machine: run again in {args.retry_pause:g} s")
                time.sleep(args.retry_pause)
    return cells


def results_table(cells: dict[str, Cell], keys: Sequence[str]) -> str:
    rows = []
    for key in keys:
        c = cells[key]
        if not c.runs:
            rows.append([LABELS[key], "failed", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                LABELS[key],
                report.fmt_num(c.rate),
                c.runs_text(),
                c.spread(),
                report.fmt_ms(c.p50),
                report.fmt_ms(c.p99),
                report.fmt_num(c.user_us, 1),
                report.fmt_num(c.sys_us, 1),
                report.fmt_num(c.server_us, 1),
                "-" if math.isnan(c.writes) else f"{c.writes:.2f}",
                f"{c.client_cpu:.0%}",
                c.busy_text(),
                c.load_text(),
            ]
        )
    return report.markdown_table(
        [
            "target",
            "msg/s (median)",
            "msg/s, each run",
            "spread",
            "p50 ms",
            "p99 ms",
            "server CPU us/msg user",
            "sys",
            "total",
            "write(2)/msg",
            "client CPU",
            "cores busy",
            "other load",
        ],
        rows,
        align="lrrrrrrrrrrll",
    )


def ratio_table(cells: dict[str, Cell], keys: Sequence[str]) -> str:
    refs = [k for k in keys if k.startswith("websockets") and cells[k].runs]
    rows = []
    for key in keys:
        if not key.startswith("fastgw") or not cells[key].runs:
            continue
        c = cells[key]
        for ref in refs:
            r = cells[ref]
            ratio = c.rate / r.rate
            worst = min(x.res.rate for x in c.runs) / max(x.res.rate for x in r.runs)
            rows.append(
                [
                    LABELS[key],
                    LABELS[ref],
                    f"{ratio:.0%}",
                    f"{worst:.0%}",
                    f"{c.p99 / r.p99:.2f}x",
                    f"{c.server_us / r.server_us:.2f}x",
                    f"{BUDGET:.0%}",
                    "yes" if ratio >= BUDGET else "NO",
                ]
            )
    return report.markdown_table(
        [
            "fastgw target",
            "against",
            "msg/s ratio (medians)",
            "worst run / best run",
            "p99 ratio",
            "CPU us/msg ratio",
            "budget",
            "within",
        ],
        rows,
        align="llrrrrrl",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.websocket_echo",
        description="WebSocket echo messages/s and round trip: fastgw (1 worker) vs plain websockets.",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run (1)")
    p.add_argument("--connections", type=int, default=64, help="client connections (64)")
    p.add_argument("--window", type=int, default=8, help="frames in flight per connection (8)")
    p.add_argument("--repeat", type=int, default=3, help="runs per target, interleaved (3)")
    p.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma list among {', '.join(TARGETS)} (all)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="times a run is measured again when other work ran on the cores meanwhile (2)",
    )
    p.add_argument("--retry-pause", type=float, default=5.0, help="seconds before such a re-run (5)")
    p.add_argument("--write", action="store_true", help="write the tables to bench/RESULTS.md")
    args = p.parse_args(argv)
    args.keys = [k.strip() for k in args.targets.split(",") if k.strip()]
    bad = [k for k in args.keys if k not in TARGETS]
    if bad:
        p.error(f"unknown targets: {bad}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = report.machine_info(None, None) + versions()  # before this process pins itself
    ncpu = len(os.sched_getaffinity(0))
    server_cores = [0] if ncpu >= 2 else None
    if ncpu >= 2:
        os.sched_setaffinity(0, {1})  # the client; the servers are started with taskset -c 0
    try:
        with (
            sigterm_as_interrupt(),
            tempfile.TemporaryDirectory(prefix="fastgw-wsecho-") as tmpdir,
            ProcessSet() as procs,
        ):
            targets = [start_target(procs, key, Path(tmpdir), server_cores) for key in args.keys]
            # NOTE: a fresh server's start-up work (imports, the first metrics publish 1 s after
            # start) stays out of the measure.
            time.sleep(3.0)
            cells = measure(targets, args)
    except KeyboardInterrupt:
        log("websocket_echo: interrupted; servers stopped")
        return 130
    except RuntimeError as ex:
        log(f"websocket_echo: {ex}")
        return 2
    table = results_table(cells, args.keys)
    ratios = ratio_table(cells, args.keys)
    print(table)
    print()
    print(ratios)
    for key, c in cells.items():
        if c.failed:
            print(f"\n{key}: {c.failed}")
    if args.write:
        cmd = "python -m bench.websocket_echo" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
        pin = "server pinned to core 0, client to core 1" if server_cores else "nothing pinned (one core)"
        body = "\n\n".join(
            [
                "## WebSocket echo, one worker",
                report.machine_md([(k, report._loadavg() if k == "Load average" else v) for k, v in info]),
                f"Command: `{cmd}`  \n"
                f"{args.repeat} runs per target of {args.seconds:g} s measured after {args.warmup:g} s "
                f"unmeasured, interleaved (medians shown, every run listed); {pin}. Client: one "
                f"process of raw asyncio protocols on uvloop, {args.connections} connections, each "
                f"keeping {args.window} masked 16-byte text frames in flight. p50/p99: round trip of "
                "each frame (its send to its echo's receipt), closed loop, so p50 is about "
                "connections x window / msg/s. Server CPU: user + system time of the server's "
                "process tree during the measured seconds / messages echoed. write(2)/msg: write "
                "syscalls of the serving process per message (`/proc/PID/io` syscw; `-` for stock "
                "asyncio, whose send(2) calls are not counted there). Other load: a run during which "
                "core 0 was busy beyond the server's own CPU, or core 1 beyond the client's by 15 "
                f"points, is measured again (up to {args.retries} times, {args.retry_pause:g} s apart); "
                "`kept with other load`: still so after the last attempt.",
                table,
                "Budget (the issue: fastgw at least 70 % of a plain `websockets` echo server on the "
                "same core; `worst run / best run` is fastgw's slowest run against the reference's "
                "fastest):",
                ratios,
            ]
        )
        write_block("echo", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
