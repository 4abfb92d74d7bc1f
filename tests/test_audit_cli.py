"""`civicmesh audit verify|export|verify-export|report|readers` on a tmp home, through the CLI."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from civicmesh.accesslog import AccessLog, AccessRecord
from civicmesh.catalog import Catalog
from civicmesh.cli import main
from civicmesh.products import ColumnSpec, ProductSpec
from civicmesh.settings import Settings
from civicmesh.snapshots import write_snapshot
from civicmesh.store import dispose_all, get_engine

SR = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests",
    scope_column="district",
    columns=(
        ColumnSpec("request_id", "varchar"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("requester_name", "varchar", "Who filed it", ("pii",), "hash"),
    ),
)
SUMMARY = ProductSpec(
    department="city_ops",
    product="district_summary",
    classification="internal",
    owner="olivia@city.example",
    description="Requests per district, derived from service requests",
    columns=(ColumnSpec("district", "varchar"), ColumnSpec("requests", "bigint")),
)
PAYMENTS = ProductSpec(
    department="finance",
    product="vendor_payments",
    classification="confidential",
    owner="fiona@city.example",
    description="Payments",
    columns=(
        ColumnSpec("payment_id", "integer"),
        ColumnSpec("vendor", "varchar"),
        ColumnSpec("payee_iban", "varchar", "Bank account", ("pii",), "redact"),
    ),
)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CIVICMESH_AUDIT_KEY", "test-audit-key")
    monkeypatch.delenv("CIVICMESH_METADATA_URL", raising=False)
    monkeypatch.delenv("CIVICMESH_POLICIES_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    settings.ensure_dirs()
    yield settings
    dispose_all()


def _log(settings: Settings) -> AccessLog:
    return AccessLog.from_settings(settings)


def _record(i: int, subject: str = "bob", ts: str | None = None, **kw: object) -> AccessRecord:
    fields: dict = {
        "request_id": f"r{i}",
        "action": "read",
        "status": 200,
        "decision": "allow",
        "reason": "analyst",
        "subject": subject,
        "roles": ["analyst@public_works"],
        "product": SR.name,
        "columns_requested": ["district", "requester_name"],
        "columns_returned": ["district", "requester_name"],
        "columns_masked": {"requester_name": "hash"},
        "rows": i,
        "latency_ms": 1.5,
    }
    fields.update(kw)
    if ts is not None:
        fields["ts"] = ts
    return AccessRecord(**fields)


def _fill(settings: Settings, n: int) -> None:
    log = _log(settings)
    for i in range(1, n + 1):
        log.append([_record(i)])


def _raw(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.metadata_url.removeprefix("sqlite:///"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- verify -----------------------------------------------------------------------------------------


def test_verify_ok_names_the_head(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(settings, 120)
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 0
    assert out.startswith("OK") and "head seq 120" in out and "the last at seq 100" in out


SWAP = (
    "UPDATE access_log SET seq = -seq WHERE seq IN (40, 41)",
    "UPDATE access_log SET seq = 41 WHERE seq = -40",
    "UPDATE access_log SET seq = 40 WHERE seq = -41",
)


@pytest.mark.parametrize(
    ("statements", "bad_seq", "problem"),
    [
        (("UPDATE access_log SET subject = 'mallory' WHERE seq = 30",), 30, "modified"),
        (("UPDATE access_log SET columns_masked = '{}' WHERE seq = 7",), 7, "modified"),
        (("DELETE FROM access_log WHERE seq = 60",), 60, "deleted"),
        (SWAP, 40, "reordered"),
        (("DELETE FROM access_log WHERE seq >= 150",), 150, "truncated"),
        (
            ("UPDATE access_log_checkpoints SET ts = '2020-01-01T00:00:00.000000Z' WHERE seq = 200",),
            200,
            "forged",
        ),
    ],
)
def test_verify_names_the_first_bad_record(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    statements: tuple[str, ...],
    bad_seq: int,
    problem: str,
) -> None:
    _fill(settings, 230)  # checkpoints at 100 and 200
    with _raw(settings) as raw:
        for statement in statements:
            raw.execute(statement)
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 1, out
    assert out.startswith(f"BAD: first bad seq {bad_seq}: {problem}"), out
    code, out, _ = _run(capsys, "audit", "verify", "--json")
    result = json.loads(out)
    assert code == 1 and result["first_bad"] == bad_seq and result["problem"].startswith(problem)


def test_rewritten_chain_is_caught_by_the_checkpoint(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker who edits a record and recomputes every later hash still breaks a signature."""
    from civicmesh.accesslog import chain_hash

    _fill(settings, 120)
    log = _log(settings)
    rows = list(log.rows())
    prev = rows[49]["hash"]
    with _raw(settings) as raw:
        for row in rows[50:]:
            row = dict(row, prev_hash=prev)
            if row["seq"] == 51:
                row["subject"] = "mallory"
            row["hash"] = prev = chain_hash(row)
            raw.execute(
                "UPDATE access_log SET subject = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (row["subject"], row["prev_hash"], row["hash"], row["seq"]),
            )
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 1 and "first bad seq 100: modified" in out and "checkpoint" in out


# -- export -----------------------------------------------------------------------------------------


def _three_months(settings: Settings) -> None:
    log = _log(settings)
    for i, month in enumerate(("01", "01", "02", "02", "02", "03"), start=1):
        log.append([_record(i, ts=f"2026-{month}-1{i}T10:00:00.000000Z")])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_with_manifest_verifies_without_the_store(
    settings: Settings, capsys: pytest.CaptureFixture[str], fmt: str, tmp_path: Path
) -> None:
    _three_months(settings)
    out_file = tmp_path / f"feb.{fmt}"
    code, out, err = _run(
        capsys, "audit", "export", "--since", "2026-02-01", "--until", "2026-03-01", "--format", fmt,
        "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads(out_file.with_name(out_file.name + ".manifest.json").read_text())
    assert (manifest["first_seq"], manifest["last_seq"], manifest["record_count"]) == (3, 5, 3)
    rows = list(_log(settings).rows())
    assert manifest["first_prev_hash"] == rows[1]["hash"] and manifest["last_hash"] == rows[4]["hash"]
    assert manifest["chain"]["store_verified"] is True
    assert "manifest_signature" in manifest
    if fmt == "csv":
        header = out_file.read_text().splitlines()[0].split(",")
    else:
        header = list(json.loads(out_file.read_text().splitlines()[0]))
    assert header == manifest["columns"]
    assert not {"token", "authorization", "value", "values"} & set(header)  # names only, never values
    # the export itself is logged
    assert _log(settings).head() == 7
    dispose_all()
    (settings.home / "metadata.db").rename(settings.home / "elsewhere.db")  # no store from here on
    code, out, _ = _run(capsys, "audit", "verify-export", str(out_file), "--with-key")
    assert code == 0 and out.startswith("OK: 3 records"), out
    text = out_file.read_text()
    out_file.write_text(text.replace("bob", "eve", 1))
    code, out, _ = _run(capsys, "audit", "verify-export", str(out_file))
    assert code == 1 and "sha256" in out and "modified" in out


def test_export_detects_a_forged_manifest(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _three_months(settings)
    code, _, _ = _run(capsys, "audit", "export", "--format", "jsonl", "--out", "all.jsonl")
    assert code == 0
    manifest_path = Path("all.jsonl.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    # drop the last record and fix the manifest's count, hash and sha256: only the signature catches it
    from civicmesh.audit.export import sha256_file

    lines = Path("all.jsonl").read_text().splitlines(keepends=True)
    Path("all.jsonl").write_text("".join(lines[:-1]))
    manifest.update(
        record_count=5,
        last_seq=5,
        last_hash=json.loads(lines[-2])["hash"],
        sha256=sha256_file(Path("all.jsonl")),
    )
    manifest_path.write_text(json.dumps(manifest))
    assert _run(capsys, "audit", "verify-export", "all.jsonl")[0] == 0
    code, out, _ = _run(capsys, "audit", "verify-export", "all.jsonl", "--with-key")
    assert code == 1 and "manifest's signature" in out


def test_export_refuses_bad_ranges(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _three_months(settings)
    code, _, err = _run(capsys, "audit", "export", "--since", "2026-03-01", "--until", "2026-02-01")
    assert code == 1 and "--since" in err
    code, _, err = _run(capsys, "audit", "export", "--out", "-")
    assert code == 1 and "--manifest" in err


# -- report -----------------------------------------------------------------------------------------


def _publish(settings: Settings, spec: ProductSpec, sql: str) -> None:
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t AS {sql}")
        written = write_snapshot(con, "t", settings.snapshots_dir / spec.department / spec.product)
    finally:
        con.close()
    Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema().publish(spec, written)


def _publish_all(settings: Settings) -> None:
    _publish(
        settings,
        SR,
        "SELECT 'SR-' || i AS request_id, 'D' || i AS district, 'P' || i AS requester_name "
        "FROM range(3) t(i)",
    )
    _publish(
        settings, SUMMARY, "SELECT 'D' || i AS district, CAST(i AS BIGINT) AS requests FROM range(3) t(i)"
    )
    _publish(
        settings,
        PAYMENTS,
        "SELECT CAST(i AS INTEGER) AS payment_id, 'V' AS vendor, 'X' AS payee_iban FROM range(3) t(i)",
    )


def test_access_review_report(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from policies.engine import PolicyEngine
    from policies.grants import AccessRequests

    _publish_all(settings)
    engine = PolicyEngine.load(settings, check_interval=None)
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    unused = store.request("bob", PAYMENTS, "read", "budget review", 30)
    store.approve(unused.id, "fiona")
    used = store.request("erin", PAYMENTS, "read_pii", "vendor audit", 30)
    store.approve(used.id, "fiona")
    log = _log(settings)
    log.append(
        [
            _record(
                1, "erin", product=PAYMENTS.name, columns_returned=["vendor", "payee_iban"], columns_masked={}
            ),
            _record(2, "dana", columns_masked={"requester_name": "hash"}),
            _record(3, "alice", columns_masked={}),  # an owner reads PII unmasked
            _record(4, "mallory", product=PAYMENTS.name, decision="deny", status=200, rows=None),
            _record(5, "mallory", product=PAYMENTS.name, decision="deny", status=200, rows=None),
        ]
    )
    code, out, err = _run(capsys, "audit", "report", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    held = {(h["product"], h["action"], h["subject"]) for h in report["rights"]}
    assert (PAYMENTS.name, "read", "bob") in held  # through the grant
    assert (PAYMENTS.name, "read", "mallory") not in held
    assert (SR.name, "audit", "carol") in held and (SR.name, "read_pii", "alice") in held
    bob_read = next(
        h
        for h in report["rights"]
        if h["subject"] == "bob" and h["product"] == PAYMENTS.name and h["action"] == "read"
    )
    assert bob_read["source"] == f"access request #{unused.id}" and bob_read["masked"] == ["payee_iban"]
    assert [(g["request_id"], g["subject"]) for g in report["unused_grants"]] == [(unused.id, "bob")]
    assert report["denials_by_product"] == {PAYMENTS.name: {"mallory": 2}}
    pii = report["pii_reads_by_subject"]
    assert set(pii) == {"alice", "erin"}  # dana's read was masked
    assert pii["erin"][PAYMENTS.name]["columns"] == ["payee_iban"]
    code, out, _ = _run(capsys, "audit", "report", "--days", "30")
    assert code == 0
    assert "grants unused in the last 30 days" in out and f"#{unused.id}" in out
    assert "finance.vendor_payments" in out and "mallory 2" in out


# -- readers of derived data (lineage join) ---------------------------------------------------------


def _event(job: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> dict:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "civicmesh", "name": job},
        "inputs": [{"namespace": ns, "name": n} for ns, n in inputs],
        "outputs": [{"namespace": ns, "name": n} for ns, n in outputs],
        "producer": "https://civicmesh.test",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def record_lineage(settings: Settings) -> str:
    """landing csv -> raw table -> mart -> product SR -> (dbt) city_ops mart -> product SUMMARY."""
    from lineage import naming
    from lineage.outbox import Outbox

    landing = settings.landing_dir / "public_works" / "service_requests.csv"
    wh = settings.warehouse_path

    def d(ref: naming.DatasetRef) -> tuple[str, str]:
        return ref.namespace, ref.name

    raw = naming.duckdb_dataset(wh, "raw.public_works_service_requests")
    mart = naming.duckdb_dataset(wh, "main.service_requests")
    summary_mart = naming.duckdb_dataset(wh, "main.district_summary")
    Outbox(get_engine(settings.metadata_url)).ensure_schema().append(
        [
            _event("ingest.raw.public_works_service_requests", [d(naming.file_dataset(landing))], [d(raw)]),
            _event("dbt.public_works.service_requests", [d(raw)], [d(mart)]),
            _event("publish.public_works.service_requests", [d(mart)], [d(naming.product_dataset(SR.name))]),
            _event("dbt.city_ops.district_summary", [d(mart)], [d(summary_mart)]),
            _event(
                "publish.city_ops.district_summary",
                [d(summary_mart)],
                [d(naming.product_dataset(SUMMARY.name))],
            ),
        ]
    )
    return str(landing)


def _reads(settings: Settings) -> None:
    _log(settings).append(
        [
            _record(1, "dana", row_filter={"column": "district", "values": ["D3"]}),
            _record(2, "alice", columns_masked={}),
            _record(
                3,
                "mallory",
                product=SUMMARY.name,
                columns_returned=["district", "requests"],
                columns_masked={},
            ),
            _record(4, "mallory", decision="deny", rows=None),  # denied: not a reader
            _record(5, "erin", product=PAYMENTS.name, columns_masked={}),  # not derived from SR
        ]
    )


@pytest.mark.parametrize(
    "source",
    [
        "public_works.service_requests",
        "LANDING",
        "raw.public_works_service_requests",
        "public_works/service_requests.csv",
    ],
)
def test_readers_of_a_pii_derivative(
    settings: Settings, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    _publish_all(settings)
    landing = record_lineage(settings)
    _reads(settings)
    source = landing if source == "LANDING" else source
    code, out, err = _run(capsys, "audit", "readers", "--derived-from", source, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["products"] == [SUMMARY.name, SR.name]
    got = {(r["subject"], r["product"]): r for r in result["readers"]}
    assert set(got) == {("alice", SR.name), ("dana", SR.name), ("mallory", SUMMARY.name)}
    assert got[("dana", SR.name)]["masks"] == {"requester_name": "hash"}
    assert got[("dana", SR.name)]["rowFilters"] == [{"column": "district", "values": ["D3"]}]
    assert got[("alice", SR.name)]["masks"] == {}


def test_readers_text_scoping_and_unknown(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _publish_all(settings)
    record_lineage(settings)
    _reads(settings)
    code, out, _ = _run(capsys, "audit", "readers", "--derived-from", SR.name)
    assert code == 0 and "mallory" in out and "requester_name=hash" in out and "district in D3" in out
    # as alice (owner of public_works, not of city_ops): the derivative is left out, as in GraphQL
    code, out, _ = _run(
        capsys, "audit", "readers", "--derived-from", SR.name, "--as", "alice", "--format", "json"
    )
    assert code == 0 and json.loads(out)["products"] == [SR.name]
    code, out, _ = _run(capsys, "audit", "readers", "--derived-from", SR.name, "--since", "2030-01-01")
    assert code == 0 and "(no reads recorded)" in out
    code, _, err = _run(capsys, "audit", "readers", "--derived-from", "nope.nothing")
    assert code == 1 and "lineage knows no dataset" in err


def test_export_default_name_and_stdout(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _three_months(settings)
    assert _run(capsys, "audit", "export", "--format", "csv")[0] == 0
    code, out, _ = _run(capsys, "audit", "verify-export", "access-log-1-6.csv", "--with-key")
    assert code == 0, out
    code, out, err = _run(capsys, "audit", "export", "--out", "-", "--manifest", "m.json")
    assert code == 0 and "to stdout" in err
    Path("stdout.jsonl").write_text(out)
    code, out, _ = _run(
        capsys, "audit", "verify-export", "stdout.jsonl", "--manifest", "m.json", "--with-key"
    )
    assert code == 0 and "7 records" in out, out  # the first export was logged too
