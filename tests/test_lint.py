"""ruff (with the rule that refuses in-process locks) and mypy keep the apps clean."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_refuses_a_lock(tmp_path):
    sample = ROOT / "dispatch" / "_lint_probe.py"
    sample.write_text("import asyncio\n\nLOCK = asyncio.Lock()\n")
    try:
        result = run("ruff", "check", "--no-cache", str(sample))
    finally:
        sample.unlink()
    assert result.returncode == 1 and "No in-process locks" in result.stdout


@pytest.mark.timeout(600)
def test_mypy_is_clean():
    result = run("mypy", "dispatch", "nodes", "pools", "tenants", "schedulerproj")
    assert result.returncode == 0, result.stdout + result.stderr
