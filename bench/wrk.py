"""Running wrk (bounded in time, pinned) and parsing its report."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import pin_preexec, pin_prefix

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class WrkResult:
    rps: float = 0.0
    requests: int = 0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    non2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    wrk_cpu_s: float = 0.0
    failure: str | None = None  # wrk itself failed (no report)
    output: str = ""

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())

    @property
    def wrk_cpu_share(self) -> float:
        return self.wrk_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def error_text(self) -> str:
        if self.failure:
            return self.failure
        parts = [f"{k} {v}" for k, v in self.socket_errors.items() if v]
        if self.non2xx:
            parts.insert(0, f"non-2xx {self.non2xx}")
        return ", ".join(parts)


def _duration_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS_S[m.group(2)] * 1000.0


def parse_wrk(out: str) -> WrkResult:
    r = WrkResult(output=out)
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if m is None:
        r.failure = "no Requests/sec in wrk output: " + " | ".join(out.strip().splitlines()[-3:])
        return r
    r.rps = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in", out, re.M)
    if m:
        r.requests = int(m.group(1))
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", out, re.M)
        if m:
            setattr(r, attr, _duration_ms(m.group(1)))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r.non2xx = int(m.group(1))
    return r


def _lua_str(s: str) -> str:
    """A Lua string literal for any text: plain characters kept, every other byte as ``\\ddd``."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 /._-:,;=+*@?&%()[]{}!#$^~|<>")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in s.encode()) + '"'


def write_script(
    path: Path,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body_file: Path | None = None,
    body_size: int | None = None,
) -> Path:
    """A wrk Lua script setting method, headers and body (read from a file, or ``body_size`` bytes)."""
    lines = [f"wrk.method = {_lua_str(method)}"]
    for name, value in headers:
        lines.append(f"wrk.headers[{_lua_str(name)}] = {_lua_str(value)}")
    if body_file is not None:
        lines += [
            f"local f = assert(io.open({_lua_str(str(body_file))}, 'rb'))",
            "wrk.body = f:read('*a')",
            "f:close()",
        ]
    elif body_size is not None:
        lines.append(f"wrk.body = string.rep('x', {int(body_size)})")
        lines.append("wrk.headers['Content-Type'] = 'application/octet-stream'")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(
    wrk: str,
    url: str,
    connections: int,
    duration: float,
    threads: int = 1,
    script: Path | None = None,
    cores: Sequence[int] | None = None,
    timeout: str = "5s",
) -> WrkResult:
    """Run one wrk load; never longer than duration + 20 s. CPU of wrk from its rusage."""
    cmd = [
        *pin_prefix(cores),
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        timeout,
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    with tempfile.TemporaryFile() as out:

        def _pre() -> None:
            pin_preexec(cores)

        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_pre,
        )
        deadline = t0 + duration + 20
        rusage = None
        status = 0
        try:
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    rusage = ru
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        finally:
            if rusage is None:  # overran (or interrupted): kill it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        wall = time.monotonic() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    if rusage is None:
        r = WrkResult(output=text, failure=f"wrk overran {duration + 20:.0f}s and was killed")
        r.wall_s = wall
        return r
    r = parse_wrk(text)
    if r.failure is None and proc.returncode != 0:
        r.failure = f"wrk exit code {proc.returncode}"
    r.wall_s = wall
    r.wrk_cpu_s = rusage.ru_utime + rusage.ru_stime
    return r
