"""The quick benchmark scripts still run (their figures are not asserted: benchmarks, not tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_policy_benchmark_runs_and_reports_both_rates() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "policy.py"),
            "--departments",
            "5",
            "--users",
            "20",
            "--decisions",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "uncached:" in result.stdout and "cached:" in result.stdout


def test_integrity_benchmark_runs_and_reports_the_first_open_cost() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "integrity.py"), "--rows", "20000", "--trials", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "checksum check on first open:" in result.stdout and "first read, checked:" in result.stdout


def test_storage_benchmark_runs_and_reports_bytes_per_request() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "storage.py"),
            *("--requests", "300", "--warmup", "100", "--archive-every", "100"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "compacted / baseline:" in result.stdout and "bytes/request" in result.stdout
    assert "archived / baseline:" in result.stdout
    assert "audit verify over archive + store: OK" in result.stdout
