"""`civicmesh generate` through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicmesh.cli import main


def test_generate_writes_landing_files_with_a_progress_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "--rows", "1000", "--seed", "3", "--out", str(tmp_path)]) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet")) == [
        "environment/air_quality.parquet",
        "finance/vendor_payments.parquet",
        "hr/employees.parquet",
        "public_works/service_requests.parquet",
        "transportation/collisions.parquet",
        "transportation/traffic_counts.parquet",
    ]
    captured = capsys.readouterr()
    assert captured.out == ""  # progress and summary go to stderr
    assert "public_works/service_requests" in captured.err and "wrote" in captured.err


def test_default_output_is_the_landing_dir_of_civicmesh_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path))
    assert main(["generate", "--rows", "1000"]) == 0
    assert (tmp_path / "landing" / "public_works" / "service_requests.parquet").is_file()


@pytest.mark.parametrize("args", [["--rows", "999"], ["--rows", "10000001"], ["--seed", "-1"]])
def test_bad_arguments_fail_with_a_message(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", *args, "--out", str(tmp_path)]) == 1
    assert "civicmesh generate:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
