"""Tables, machine description, RESULTS.md sections and the chart."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.procs import log, tool_version

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_PNG = BENCH_DIR / "results.png"


def fmt_num(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def fmt_ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown table padded to be readable as plain text too. ``align``: one l/r per column."""
    cols = len(header)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(cols)]
    al = (align or "l" * cols).ljust(cols, "l")

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            out.append(str(c).rjust(widths[i]) if al[i] == "r" else str(c).ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, al, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def _git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR.parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _fastgw_core_build() -> str:
    code = "import fastgw_core as c; print(c.COMPILED)"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=str(BENCH_DIR.parent),
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "not importable"


def machine_info(nginx: str | None, wrk: str | None) -> list[tuple[str, str]]:
    info = [
        ("Date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", _cpu_model()),
        ("Cores", f"{os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})"),
        ("Memory", _mem_total()),
        ("Kernel", f"{platform.system()} {platform.release()}"),
        ("OS", _os_release()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("fastgw", f"git {_git_rev()}, compiled core: {_fastgw_core_build()}"),
        ("Load average", _loadavg()),
    ]
    if nginx:
        info.append(("nginx", tool_version([nginx, "-v"]).replace("nginx version: ", "")))
    if wrk:
        info.append(("wrk", re.sub(r"\s+Copyright.*", "", tool_version([wrk, "-v"]))))
    return info


def _loadavg() -> str:
    """1/5/15-minute load when the report is made: other work on the machine skews the figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3]) + " (at the end of the run)"
    except OSError:
        return "?"


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "?"


def machine_md(info: list[tuple[str, str]]) -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in info)


def command_line() -> str:
    return "python -m bench.load" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])


# --------------------------------------------------------------------------- RESULTS.md


def update_results(section: str, body: str, path: Path = RESULTS_MD) -> None:
    """Replace (or append) one marked section of RESULTS.md, keeping the others."""
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = (
        path.read_text()
        if path.exists()
        else (
            "# fastgw load bench results\n\n"
            "Generated by `python -m bench.load` "
            "(see [README.md](README.md) for how to read the columns).\n\n"
        )
    )
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        _, post = rest.split(end, 1)
        text = pre + block + post.lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
    log(f"bench: wrote {path}")


# --------------------------------------------------------------------------- chart


def write_chart(
    scenarios: Sequence[str],
    targets: Sequence[str],
    rps: dict[tuple[str, str], float],
    p99: dict[tuple[str, str], float],
    title: str,
    path: Path = RESULTS_PNG,
) -> bool:
    """Two panels (req/s, p99) of grouped bars; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("bench: matplotlib is not installed (pip install 'fastgw[bench]'): chart skipped")
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    n = len(targets)
    width = 0.8 / max(1, n)
    xs = range(len(scenarios))
    for ax, data, ylabel in (
        (axes[0], rps, "requests/s (higher is better)"),
        (axes[1], p99, "p99 latency, ms (lower is better)"),
    ):
        for i, t in enumerate(targets):
            vals = [data.get((s, t), float("nan")) for s in scenarios]
            pos = [x - 0.4 + width * (i + 0.5) for x in xs]
            bars = ax.bar(pos, [0 if math.isnan(v) else v for v in vals], width, label=t)
            for b, v in zip(bars, vals, strict=True):
                label = "failed" if math.isnan(v) else (f"{v:,.0f}" if v >= 100 else f"{v:.2g}")
                ax.annotate(
                    label,
                    (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.set_xticks(list(xs), list(scenarios), fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"bench: wrote {path}")
    return True
