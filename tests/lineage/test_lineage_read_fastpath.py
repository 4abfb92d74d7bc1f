"""The request path's read event and writes: same data as the attrs path, cheaper to produce.

`read_event_dict` must equal `to_dict(read_event(...))` (so it is the same OpenLineage 2-0-2 event,
valid against the spec schema), the outbox's orjson serialisation must parse back to the same data,
and the lean inserts must store what Core inserts stored (types processed, errors as SQLAlchemy's).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from ol_schema import validate
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from lineage import events, naming
from lineage.outbox import Outbox, _dumps, outbox_table
from meshcore.accesslog import AccessLog, AccessRecord, _insert_plan, access_log_table, insert_rows
from meshcore.audit.verify import verify_report
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.store import get_engine
from policies.decision import Decision, RowFilter

SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests",
    columns=(
        ColumnSpec("request_id", "bigint", description="The request"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("reporter_email", "varchar", tags=("pii",), mask="hash"),
        ColumnSpec("opened_at", "", description=""),  # no type, empty description: both left out
    ),
    scope_column="district",
)

ALLOW = Decision(
    True,
    "dana",
    SPEC.name,
    "read",
    "p, role:supervisor, public_works, read",
    "supervisors of public_works read its products",
    "sha256:1234",
    {"reporter_email": "hash"},
    RowFilter("district", ("D3", "D5")),
)
DENY = Decision(False, "mallory", SPEC.name, "read", None, "no rule grants read", "sha256:1234")
DENY_SILENT = Decision(False, "mallory", SPEC.name, "read", None, "", "sha256:1234")
EXPORT = Decision(True, "erin", SPEC.name, "export", "p, erin, export", "granted", "v1", source="grants:7")
PARENT = naming.dagster_parent("3c0c6a4e-1f2b-4b8e-9d1a-2f3e4d5c6b7a", "build_all")

CASES = [
    pytest.param(("r1", "dana", SPEC, "snap-1", ["request_id", "reporter_email"], ALLOW, 42), {}, id="allow"),
    pytest.param(
        ("r2", "dana", SPEC, None, ["district", "gone", "opened_at"], ALLOW, 0), {}, id="no-snapshot"
    ),
    pytest.param(("r3", "mallory", SPEC, "snap-1", [], DENY, 0), {}, id="deny"),
    pytest.param(("r4", "mallory", SPEC, "snap-1", [], DENY_SILENT, None), {}, id="deny-no-reason"),
    pytest.param(
        ("r5", "erin", SPEC, "s", ["request_id"], EXPORT, 10), {"export_format": "csv"}, id="export"
    ),
    pytest.param(
        ("r6", "dana", SPEC, "s", [], ALLOW, 1),
        {"event_time": datetime(2026, 11, 27, 6, 0)},
        id="naive-time",
    ),
    pytest.param(
        ("r7", "dana", SPEC, "s", ["district"], ALLOW, 1),
        {"event_time": "2026-11-27T06:00:00+00:00"},
        id="str-time",
    ),
]


@pytest.mark.parametrize(("args", "kwargs"), CASES)
def test_read_event_dict_equals_the_attrs_event(args: tuple, kwargs: dict) -> None:
    kwargs = {"run_id": events.new_run_id(), "event_time": "2026-11-27T06:00:00.123456+00:00", **kwargs}
    fast = events.read_event_dict(*args, **kwargs)
    assert fast == events.to_dict(events.read_event(*args, **kwargs))
    validate(fast)
    assert json.loads(_dumps(fast)) == fast


def test_read_event_dict_defaults_a_new_run_and_now() -> None:
    first = events.read_event_dict("r", "dana", SPEC, "s", ["district"], ALLOW, 1)
    second = events.read_event_dict("r", "dana", SPEC, "s", ["district"], ALLOW, 1)
    validate(first)
    assert first["run"]["runId"] != second["run"]["runId"]
    assert datetime.fromisoformat(first["eventTime"]).tzinfo is not None
    # shared cached parts are not corrupted by building more events
    assert first["job"] == events.to_dict(events.read_event("r", "dana", SPEC, "s", [], ALLOW, 1))["job"]


def test_the_request_paths_schema_urls_are_the_librarys() -> None:
    """`lineage.read_events` names the facet schemas without loading openlineage-python: an upgrade
    of the library that moves one must fail here, not drift."""
    from openlineage.client.event_v2 import RunEvent
    from openlineage.client.generated import (
        dataset_version_dataset,
        error_message_run,
        job_type_job,
        processing_engine_run,
        schema_dataset,
    )

    from lineage import read_events
    from lineage.facets import AccessDecisionRunFacet

    classes = [
        RunEvent,
        error_message_run.ErrorMessageRunFacet,
        dataset_version_dataset.DatasetVersionDatasetFacet,
        schema_dataset.SchemaDatasetFacet,
        job_type_job.JobTypeJobFacet,
        processing_engine_run.ProcessingEngineRunFacet,
        AccessDecisionRunFacet,
    ]
    assert {c.__name__: c._get_schema() for c in classes} == read_events.SCHEMA_URLS


def test_run_ids_are_uuid7_in_time_order() -> None:
    """RFC 9562 UUIDv7, as openlineage-python's `generate_new_uuid` made them: version 7, RFC
    variant, the creation millisecond first (so ids sort by time), random after it."""
    import time
    import uuid

    before = time.time_ns() // 1_000_000
    ids = [uuid.UUID(events.new_run_id()) for _ in range(200)]
    after = time.time_ns() // 1_000_000
    assert {(u.version, u.variant) for u in ids} == {(7, uuid.RFC_4122)}
    stamps = [u.int >> 80 for u in ids]
    assert before <= min(stamps) and max(stamps) <= after and stamps == sorted(stamps)
    assert len(set(ids)) == len(ids)


def test_outbox_serialisation_matches_json_and_falls_back() -> None:
    data = {"b": [1, 2.5, None, "é"], "a": {"z": True, "y": {}}}
    assert json.loads(_dumps(data)) == data
    assert _dumps(data) == json.dumps(data, sort_keys=True, separators=(",", ":"))  # \u-escaped
    ascii_only = {"b": [1, 2.5, None, "e"], "a": {"z": True, "y": {}}}
    assert _dumps(ascii_only) == json.dumps(ascii_only, sort_keys=True, separators=(",", ":"))
    huge = {"n": 2**70}
    assert json.loads(_dumps(huge)) == huge  # beyond orjson: json takes it


def test_outbox_rows_from_dicts_and_events_are_the_same(outbox: Outbox) -> None:
    kwargs = {"run_id": events.new_run_id(), "event_time": "2026-11-27T06:00:00+00:00"}
    args = ("r1", "dana", SPEC, "snap-1", ["district"], ALLOW, 3)
    outbox.append([events.read_event_dict(*args, **kwargs), events.read_event(*args, **kwargs)])
    stored = [e.as_dict() for e in outbox.events()]
    assert stored[0] == stored[1] == events.to_dict(events.read_event(*args, **kwargs))
    with outbox.engine.connect() as conn:
        created = conn.execute(select(outbox_table.c.created_at)).scalars().all()
    assert all(isinstance(c, datetime) for c in created)  # the DateTime type still processed it


def test_insert_plans_follow_the_dialect() -> None:
    columns = ("event_uid", "run_id", "job_namespace", "job_name", "event_type", "event_time")
    lite = _insert_plan(sqlite.dialect(), outbox_table, columns)
    assert lite.positional and "?" in lite.sql and lite.names == columns
    pg = _insert_plan(postgresql.dialect(), outbox_table, (*columns, "event_json", "created_at"))
    assert not pg.positional and "%(event_uid)s" in pg.sql
    assert "seq" not in pg.sql and "RETURNING" not in pg.sql.upper()  # the server numbers rows
    server_dated = {"created_at": func.clock_timestamp()}  # lineage.outbox's rows on PostgreSQL
    dated = _insert_plan(postgresql.dialect(), outbox_table, (*columns, "event_json"), server_dated)
    assert "clock_timestamp()" in dated.sql and "created_at" not in dated.names


def test_an_insert_plan_is_never_reused_for_another_sql_value_of_the_same_column() -> None:
    """The plan cache must key `sql_values` by what they say, not only which columns they set: a
    second caller dating rows by `now()` (the transaction's start) must not get a plan that dates
    them by `clock_timestamp()`, nor the reverse: the wrong SQL, silently."""
    columns = ("event_uid", "run_id", "job_namespace", "job_name", "event_type", "event_time", "event_json")
    dialect = postgresql.dialect()
    by_clock = _insert_plan(dialect, outbox_table, columns, {"created_at": func.clock_timestamp()})
    by_start = _insert_plan(dialect, outbox_table, columns, {"created_at": func.now()})
    assert "clock_timestamp()" in by_clock.sql and "now()" in by_start.sql
    assert _insert_plan(dialect, outbox_table, columns, {"created_at": func.clock_timestamp()}) == by_clock


def test_lean_insert_errors_are_sqlalchemy_errors_and_roll_back(tmp_path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path}/m.db")
    log = AccessLog(engine).ensure_schema()
    (seq,) = log.append([AccessRecord(request_id="x", action="read", status=200)])
    row = next(log.rows())
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        with pytest.raises(IntegrityError):
            insert_rows(conn, access_log_table, [row])  # the same seq again
        conn.rollback()
    assert [r["seq"] for r in log.rows()] == [seq] and verify_report(log).first_bad is None
    engine.dispose()


def test_lean_inserts_store_what_core_stored(tmp_path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path}/m.db")
    log = AccessLog(engine).ensure_schema()
    record = AccessRecord(
        request_id="r",
        action="read",
        status=200,
        decision="allow",
        subject="dana",
        roles=["supervisor@public_works"],
        product=SPEC.name,
        columns_masked={"reporter_email": "hash"},
        row_filter={"column": "district", "values": ["D3"]},
        latency_ms=1.23456,
        rows=3,
        ts=datetime(2026, 11, 27, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )
    log.append([record, record])
    core_row = {**next(log.rows()), "seq": 99}
    with engine.begin() as conn:
        conn.execute(access_log_table.insert(), [core_row])
    stored = list(log.rows())
    assert {k: v for k, v in stored[0].items() if k not in ("seq", "hash", "prev_hash")} == {
        k: v for k, v in stored[-1].items() if k not in ("seq", "hash", "prev_hash")
    }
    assert stored[0]["latency_ms"] == 1.235 and stored[1]["prev_hash"] == stored[0]["hash"]
    engine.dispose()


def test_an_sql_value_holding_a_bound_value_is_refused() -> None:
    """Its plan would be keyed by its text, the same for every bound value: refused, not cached."""
    columns = ("event_uid", "run_id")
    ago = {"created_at": func.now() - timedelta(minutes=1)}
    with pytest.raises(ValueError, match="plain insert"):
        _insert_plan(postgresql.dialect(), outbox_table, columns, ago)
