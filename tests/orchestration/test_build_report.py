"""The build summary: published / held back (with why) / warned per product, from the gate's
quality records of the run (a real catalog), the publish events and the failed steps."""

from __future__ import annotations

from pathlib import Path

from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.store import get_engine
from orchestration.build import BuildReport, ProductOutcome, product_outcomes


def _spec(name: str) -> ProductSpec:
    department, product = name.split(".")
    return ProductSpec(department, product, "public", "o@city.example", "", (ColumnSpec("id", "varchar"),))


def _check(name: str, severity: str, detail: str = "") -> dict[str, str]:
    return {"name": name, "message": f"{name} failed", "severity": severity, "detail": detail}


def test_outcomes_and_summary_per_product(tmp_path: Path) -> None:
    catalog = Catalog(get_engine(f"sqlite:///{tmp_path / 'm.db'}")).ensure_schema()
    record = {
        "a.model_error": ("failed", [_check("model x", "error", "Binder Error: column y not found")]),
        "a.warned": ("warned", [_check("accepted_values_z", "warn")]),
        "a.clean": ("passed", []),
        "a.old_record": ("passed", []),
    }
    for name, (status, checks) in record.items():
        run = "run-0" if name == "a.old_record" else "run-1"
        catalog.record_quality(
            _spec(name), status, {"status": status, "run_id": run, "failed_checks": checks}
        )
    outcomes = product_outcomes(
        catalog,
        [*record, "a.not_built", "a.publish_failed"],
        "run-1",
        published={"a.warned": "a.warned@1", "a.clean": "a.clean@1"},
        failed={"a.publish_failed": "schema change is not compatible: column 'id' was dropped"},
    )
    report = BuildReport(run_id="run-1", seconds=12.0, products=outcomes)
    by_name = {o.product: o for o in outcomes}
    assert by_name["a.model_error"].reasons == ("model x failed\nBinder Error: column y not found",)
    assert by_name["a.warned"].outcome == "warned" and by_name["a.warned"].reasons == (
        "accepted_values_z failed",
    )
    assert by_name["a.clean"].outcome == "published"
    assert by_name["a.old_record"].reasons[0].startswith("not built: an upstream step failed")
    assert by_name["a.not_built"].outcome == "held back"
    assert by_name["a.publish_failed"].reasons == (
        "schema change is not compatible: column 'id' was dropped",
    )
    assert {o.product for o in report.held_back} == {
        "a.model_error",
        "a.old_record",
        "a.not_built",
        "a.publish_failed",
    }
    summary = report.summary()
    assert summary[0] == "build FAILED in 12.0s (run run-1): 2 of 6 products published, 4 held back, 1 warned"
    assert summary[1:4] == [
        "  held back  a.model_error",
        "      - model x failed",
        "        Binder Error: column y not found",
    ]
    assert "  warned     a.warned          snapshot a.warned@1" in summary
    assert summary[-1] == "  published  a.clean           snapshot a.clean@1"


def test_a_failed_step_outside_any_product_fails_the_build_and_a_warning_does_not() -> None:
    ingest = "raw_hr__employees: InvalidInputException: not a Parquet file"
    failed = BuildReport(run_id="r", failed_steps=[ingest, "published__a__b: held back"])
    assert failed.failed and failed.other_failures == [ingest]
    assert (
        failed.summary()[0].startswith("build FAILED") and failed.summary()[-1] == f"  failed step: {ingest}"
    )
    warned = BuildReport(
        run_id="r", products=[ProductOutcome("a.b", True, "a.b@1", ("accepted_values failed",))]
    )
    assert not warned.failed and warned.summary()[0].startswith("build succeeded")
