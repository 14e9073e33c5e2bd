"""The load bench's ratio table: ratios of the medians, and of each interleaved round."""

from __future__ import annotations

from bench.load import Cell, Run, Scenario, ratio_table, round_ratios
from bench.wrk import WrkResult


def _cell(*rps: float, failed_at: int = -1) -> Cell:
    runs = []
    for i, value in enumerate(rps):
        wrk = WrkResult(rps=value, requests=int(value), p99_ms=1.0)
        if i == failed_at:
            wrk.failure = "wrk died"
        runs.append(Run(wrk, cpu_user_s=0.1, cpu_sys_s=0.1))
    return Cell(runs)


def test_round_ratios_pair_the_runs_of_each_round() -> None:
    a = _cell(90.0, 50.0, 120.0)
    b = _cell(100.0, 50.0, 100.0)
    assert round_ratios(a, b) == [0.9, 1.0, 1.2]
    # a failed run drops its round only
    assert round_ratios(_cell(90.0, 50.0, 120.0, failed_at=1), b) == [0.9, 1.2]


def test_the_ratio_table_shows_both_estimates() -> None:
    # the machine stalls during a's run of round 3: the medians' ratio (55/80) takes it in, the
    # rounds' median (0.90, 0.92, 0.69) does not
    a = _cell(45.0, 92.0, 55.0)
    b = _cell(50.0, 100.0, 80.0)
    sc = Scenario("small@64", "small GET @64", "/small", 64)
    table = ratio_table([sc], {("small@64", "a"): a, ("small@64", "b"): b}, "a", "b")
    header, _, row = table.splitlines()
    assert "median of rounds" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["small GET @64", "0.69x", "0.90x", "0.69-0.92"]
