"""Repository checks: lint, and the README's configuration reference matches the model."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastgw.config.docs import BEGIN, END, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    res = subprocess.run([*cmd, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_readme_config_reference_is_generated_from_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(BEGIN)
    end = readme.index(END) + len(END)
    assert readme[start:end] == reference_markdown(), (
        "README's configuration reference is stale: replace it with `fastgw schema --markdown`"
    )


@pytest.mark.parametrize("cmd", [["--help"], ["version", "--verbose"], ["schema"]])
def test_cli_entry_points(cmd: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "fastgw", *cmd], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
