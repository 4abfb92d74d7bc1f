"""`civicmesh build` refuses an invalid product spec naming the file and the field; the
snapshots CLI lists versions and collects garbage; the landing sensor sees new files."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from civicmesh.cli import main
from meshcore.settings import Settings
from tests.mesh import BuiltMesh, copy_repo_transforms


def test_build_refuses_an_invalid_spec_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = copy_repo_transforms(tmp_path / "repo")
    yml = repo / "transforms" / "models" / "environment" / "marts" / "air_quality.yml"
    yml.write_text(yml.read_text().replace("classification: public", "classification: secret", 1))
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CIVICMESH_DBT_PROJECT_DIR", str(repo / "transforms"))
    assert main(["build"]) == 1
    err = capsys.readouterr().err
    assert "air_quality.yml" in err and "classification" in err and "'secret'" in err, err


def test_snapshots_cli_lists_and_collects(built_mesh: BuiltMesh, capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "CIVICMESH_HOME": str(built_mesh.settings.home),
        "CIVICMESH_METADATA_URL": built_mesh.settings.metadata_url,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["snapshots", "list", "public_works.service_requests"]) == 0
        out = capsys.readouterr().out
        current = built_mesh.catalog.current("public_works.service_requests")
        assert f"* {current.id}" in out
        assert main(["snapshots", "gc", "--grace-days", "0", "--keep", "1"]) == 0
        assert current.path.exists(), "the current snapshot is never collected"
        assert main(["snapshots", "list", "no_such.product"]) == 1
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_landing_sensor_requests_a_run_only_for_new_or_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.automation import new_landing_files

    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path))
    landing = tmp_path / "landing" / "environment"
    landing.mkdir(parents=True)
    (landing / "air_quality.parquet").write_bytes(b"PAR1")
    sensor = new_landing_files(Settings.from_env())
    first = sensor(dg.build_sensor_context())
    assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 1
    again = sensor(dg.build_sensor_context(cursor=first.cursor))
    assert isinstance(again, dg.SkipReason)
    os.utime(landing / "air_quality.parquet", (1, 1))
    changed = sensor(dg.build_sensor_context(cursor=first.cursor))
    assert isinstance(changed, dg.SensorResult)
    assert "environment/air_quality.parquet" in changed.run_requests[0].tags["changed"]


def test_a_failed_step_that_holds_no_product_back_still_fails_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `build succeeded ... 0 of 0 products published` above `failed step: raw_...`, exit 0."""
    landing = tmp_path / "home" / "landing" / "public_works"
    landing.mkdir(parents=True)
    (landing / "service_requests.parquet").write_text("not a parquet file")
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path / "home"))
    assert main(["build", "--select", "key:raw_public_works/service_requests"]) == 1
    err = capsys.readouterr().err
    assert "build FAILED" in err and "0 of 0 products published" in err, err
    assert "failed step: raw_public_works__service_requests: " in err and "parquet" in err, err
