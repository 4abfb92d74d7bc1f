"""The benchmark-only "governance off" switch is refused everywhere but in the benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import BENCH_GOVERNANCE_OFF_ENV, BENCH_GOVERNANCE_OFF_MARKER, bench_governance_off
from meshcore.settings import Settings

NONCE = "0123456789abcdef0123456789abcdef"


def settings_at(tmp_path: Path, demo: bool = False) -> Settings:
    return Settings(home=tmp_path, metadata_url=f"sqlite:///{tmp_path / 'metadata.db'}", demo_mode=demo)


def test_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BENCH_GOVERNANCE_OFF_ENV, raising=False)
    assert bench_governance_off(settings_at(tmp_path)) is False


@pytest.mark.parametrize("marker", [None, "another-nonce-of-sufficient-length", ""])
def test_refused_without_the_benchmarks_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker
) -> None:
    monkeypatch.setenv(BENCH_GOVERNANCE_OFF_ENV, NONCE)
    if marker is not None:
        (tmp_path / BENCH_GOVERNANCE_OFF_MARKER).write_text(marker)
    with pytest.raises(RuntimeError, match="benchmark-only"):
        bench_governance_off(settings_at(tmp_path))


def test_refused_in_demo_mode_and_with_a_short_nonce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / BENCH_GOVERNANCE_OFF_MARKER).write_text(NONCE)
    monkeypatch.setenv(BENCH_GOVERNANCE_OFF_ENV, NONCE)
    with pytest.raises(RuntimeError):
        bench_governance_off(settings_at(tmp_path, demo=True))
    (tmp_path / BENCH_GOVERNANCE_OFF_MARKER).write_text("short")
    monkeypatch.setenv(BENCH_GOVERNANCE_OFF_ENV, "short")
    with pytest.raises(RuntimeError):
        bench_governance_off(settings_at(tmp_path))


def test_honoured_with_the_benchmarks_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / BENCH_GOVERNANCE_OFF_MARKER).write_text(NONCE + "\n")
    monkeypatch.setenv(BENCH_GOVERNANCE_OFF_ENV, NONCE)
    assert bench_governance_off(settings_at(tmp_path)) is True
