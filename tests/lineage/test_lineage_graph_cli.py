"""The lineage graph built from outboxed events, and `civicmesh lineage show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ol_scenario import record_a_build_and_reads

from civicmesh.cli import main
from lineage import events, naming
from lineage.graph import DATASET, LineageGraph, Node
from meshcore.settings import Settings
from meshcore.store import dispose_all


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CIVICMESH_HOME", str(settings.home))
    monkeypatch.setenv("CIVICMESH_METADATA_URL", settings.metadata_url)
    record_a_build_and_reads(settings)
    yield settings
    dispose_all()


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["lineage", "show", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_upstream_reaches_the_landing_file(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _show(capsys, "public_works.service_requests", "--format", "json")
    assert code == 0
    data = json.loads(out)
    names = {n["name"] for n in data["nodes"]}
    landing = str((env.landing_dir / "public_works" / "service_requests.csv").resolve())
    assert {
        "publish.public_works.service_requests",
        "warehouse.main.service_requests",
        "dbt.civicmesh.service_requests",
        "warehouse.main.stg_service_requests",
        "warehouse.raw.public_works_service_requests",
        "ingest.raw.public_works_service_requests",
        landing,
    } <= names
    assert not any(n.startswith("consumer.") for n in names)
    landing_node = next(n for n in data["nodes"] if n["name"] == landing)
    assert landing_node["namespace"] == "file" and landing_node["depth"] == 4


def test_downstream_shows_consumers_but_not_denied_callers(env: Settings, capsys) -> None:
    code, out, _ = _show(capsys, "public_works.service_requests", "--downstream")
    assert code == 0
    assert "consumer.dana.read" in out and "mallory" not in out


def test_depth_limits_the_walk(env: Settings, capsys) -> None:
    _, out, _ = _show(capsys, "public_works.service_requests", "--depth", "1", "--format", "json")
    names = {n["name"] for n in json.loads(out)["nodes"]}
    assert "warehouse.main.service_requests" in names and "warehouse.main.stg_service_requests" not in names


@pytest.mark.parametrize(
    "fmt, marker", [("text", "<- [job] publish."), ("dot", "digraph"), ("mermaid", "flowchart LR")]
)
def test_every_format_renders(env: Settings, capsys, fmt: str, marker: str) -> None:
    code, out, _ = _show(capsys, "public_works.service_requests", "--format", fmt)
    assert code == 0 and marker in out


def test_column_lineage_of_a_derived_product_column(env: Settings, capsys) -> None:
    code, out, _ = _show(capsys, "public_works.service_requests", "--column", "days_open", "--format", "json")
    assert code == 0
    reached = {(c["dataset"].rsplit("/", 1)[-1], c["column"]) for c in json.loads(out)["columns"]}
    assert {
        ("warehouse.main.service_requests", "days_open"),
        ("warehouse.main.stg_service_requests", "opened_at"),
        ("warehouse.main.stg_service_requests", "closed_at"),
    } <= reached


def test_unknown_product_is_a_clear_error(env: Settings, capsys) -> None:
    code, _, err = _show(capsys, "public_works.nope")
    assert code == 1 and "unknown product 'public_works.nope'" in err
    code, _, err = _show(capsys, "public_works.service_requests", "--column", "nope")
    assert code == 1 and "no column 'nope'" in err


def test_graph_keeps_only_the_latest_inputs_of_a_model(tmp_path: Path) -> None:
    def model_run(source: str) -> dict:
        (_, done) = events.lifecycle(
            run_id=events.new_run_id(),
            parent=None,
            job=events.make_job(naming.dbt_model_job("p", "m"), "MODEL"),
            inputs=[events.input_dataset(naming.duckdb_dataset("/w.duckdb", source))],
            outputs=[events.output_dataset(naming.duckdb_dataset("/w.duckdb", "m"))],
        )
        return events.to_dict(done)

    graph = LineageGraph.from_events([model_run("old"), model_run("new")])
    sub = graph.walk(Node(DATASET, naming.duckdb_namespace("/w.duckdb"), "w.main.m"), "upstream", 3)
    assert {n.name for n in sub.nodes} == {"w.main.m", "dbt.p.m", "w.main.new"}
