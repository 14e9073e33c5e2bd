"""``python -m bench.function_floor`` (the parts of one in-process invocation) runs in both builds.

It checks its own route before it times anything (an in-process function route, a handler that
returns at once, a response on the direct path), so a change that breaks those assumptions fails
here instead of printing figures of something else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = ("Request", "event", "invoke", "reply", "Task")


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
def test_function_floor_prints_each_part_and_their_sum(pure: bool) -> None:
    env = dict(os.environ)
    env.pop("FASTGW_NO_EXTENSIONS", None)
    if pure:
        env["FASTGW_NO_EXTENSIONS"] = "1"
    out = subprocess.run(
        [sys.executable, "-m", "bench.function_floor", "--iterations", "640"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [*PARTS, "total"], out.stdout
    figures = [float(re.search(r"(-?\d+\.\d+) µs", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert all(f > 0 for f in figures[:4]), out.stdout
    assert abs(sum(figures[:5]) - figures[5]) <= 0.03, out.stdout  # each is rounded to 0.01
    build = "pure-Python" if pure else "compiled"
    assert f"({build} build, best of 5 runs)" in lines[-1]
