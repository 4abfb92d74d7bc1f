"""Failures inside the gateway: internal errors are masked, a slow query is interrupted."""

from __future__ import annotations

import hashlib
import threading
import time

import duckdb
import pytest

from gateway.duck import DuckPool
from gateway.errors import GovernedError
from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import WrittenSnapshot
from meshcore.store import get_engine

BROKEN = ProductSpec(
    department="city_ops",
    product="broken_feed",
    classification="public",
    owner="frank@city.example",
    description="A product whose snapshot file gets damaged.",
    columns=(ColumnSpec("n", "integer"),),
)


def test_internal_errors_are_masked_and_coded(server, gw_settings) -> None:
    # A file that is not Parquet, registered with its own checksum (so the integrity check passes
    # and DuckDB fails while reading it: an internal error, not a broken snapshot).
    garbage = b"this is not parquet at all" * 10
    path = gw_settings.snapshots_dir / "city_ops" / "broken_feed" / "garbage.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(garbage)
    written = WrittenSnapshot(path, hashlib.sha256(garbage).hexdigest(), 3, len(garbage), (("n", "INTEGER"),))
    snapshot = Catalog(get_engine(gw_settings.metadata_url)).publish(BROKEN, written)
    body = None
    for _ in range(30):  # the new product appears within a second (schema rebuild)
        body = server.gql("{ cityOps { brokenFeed { nodes { n } } } }", "alice")
        if "Cannot query field" not in str(body):
            break
        time.sleep(0.2)
    assert body is not None
    error = body["errors"][0]
    assert error["message"] == "Internal error."
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    again = server.post("{ cityOps { brokenFeed { nodes { n } } } }", "alice")
    # the key to the server log's traceback: the request's id
    assert again.json()["errors"][0]["extensions"]["requestId"] == again.headers["x-request-id"]
    assert str(snapshot.path) not in str(body) and "parquet" not in str(body).lower()
    assert body["data"] == {"cityOps": {"brokenFeed": None}}


def test_a_slow_query_is_interrupted(tmp_path) -> None:
    pool = DuckPool(tmp_path, "key", timeout_seconds=0.2)
    try:
        with pytest.raises(GovernedError) as info:
            pool.run("SELECT count(*) FROM range(100000000000) a")
        assert info.value.code == "LIMIT_EXCEEDED"
        assert pool.run("SELECT 42").rows == [(42,)]  # the pool is still usable
    finally:
        pool.close()


def test_an_interrupt_due_before_the_query_starts_is_not_lost(tmp_path) -> None:
    """With the deadline already passed when DuckDB starts (as on a loaded machine), the query
    is still interrupted: a single interrupt sent before `execute` began was lost, and the query
    ran unbounded."""
    pool = DuckPool(tmp_path, "key", timeout_seconds=0.0)
    outcome: list[str] = []

    def run() -> None:
        try:
            pool.run("SELECT count(*) FROM range(100000000000) a")
            outcome.append("finished")
        except GovernedError as exc:
            outcome.append(exc.code)

    try:
        for _ in range(5):
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            worker.join(60)
        assert outcome == ["LIMIT_EXCEEDED"] * 5
    finally:
        pool.close()


def test_the_lockdown_holds(tmp_path) -> None:
    pool = DuckPool(tmp_path, "key")
    try:
        with pytest.raises(duckdb.Error):
            pool.run("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(duckdb.Error):
            pool.run("SET enable_external_access = true")
    finally:
        pool.close()


def test_hot_snapshots_answer_like_the_parquet_file(tmp_path) -> None:
    from gateway.query import PageQuery

    snaps = tmp_path / "snaps"
    snaps.mkdir()
    path = str(snaps / "t.parquet")
    con = duckdb.connect()
    con.execute(f"COPY (SELECT CAST(i AS INTEGER) AS n, 'x' || i AS s FROM range(50) t(i)) TO '{path}'")
    con.close()
    pool = DuckPool(snaps, "key", hot_budget_bytes=1 << 30)
    try:
        assert pool.source(path, 1000) is None  # starts loading
        deadline = time.monotonic() + 10
        while (table := pool.source(path, 1000)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        spec = ProductSpec(
            department="d",
            product="p",
            classification="public",
            owner="o@x.example",
            description="",
            columns=(ColumnSpec("n", "integer"), ColumnSpec("s", "varchar", mask="hash", tags=("pii",))),
        )
        kwargs = {"spec": spec, "path": path, "columns": ["n", "s"], "masks": {"s": "hash"}}
        kwargs |= {"where": {"n": {"gte": 10}}, "order_by": [("n", "DESC")], "limit": 5, "offset": 3}
        cold = pool.run(*PageQuery(**kwargs).page_sql()).rows
        hot = pool.run(*PageQuery(**kwargs, table=table).page_sql()).rows
        assert cold == hot and [r[0] for r in hot] == [46, 45, 44, 43, 42, 41]
    finally:
        pool.close()


def _wait_loaded(pool: DuckPool, path: str) -> None:
    deadline = time.monotonic() + 60
    while path in pool._loading:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_snapshot_that_does_not_fit_in_memory_is_read_from_its_file(tmp_path) -> None:
    """The in-memory budget is only a speed-up: a snapshot whose copy outgrows DuckDB's memory (its
    size under-estimated here; DuckDB would spill it to disk) is dropped and answers from its
    Parquet file, the same rows, and is not loaded again on every read."""
    from gateway.query import PageQuery

    snaps = tmp_path / "snaps"
    snaps.mkdir()
    path = str(snaps / "big.parquet")
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT i AS n, sha256(i::VARCHAR) || sha256((i + 1)::VARCHAR) AS s FROM range(2000000) t(i)) "
        f"TO '{path}'"
    )
    con.close()
    spec = ProductSpec(
        department="d",
        product="p",
        classification="public",
        owner="o@x.example",
        description="",
        columns=(ColumnSpec("n", "bigint"), ColumnSpec("s", "varchar")),
    )
    query = PageQuery(
        spec=spec, path=path, columns=["n", "s"], where={"n": {"lt": 500}}, order_by=[("n", "DESC")], limit=3
    )
    tight = DuckPool(snaps, "key", hot_budget_bytes=1 << 20, working_memory_bytes=48 << 20, threads=1)
    files_only = DuckPool(snaps, "key", hot_budget_bytes=0)
    try:
        assert tight.source(path, 1) is None  # claims to fit: a load starts, and runs out of memory
        _wait_loaded(tight, path)
        assert tight.source(path, 1) is None and path not in tight._loading  # not tried again
        rows = tight.run(*query.page_sql()).rows
        assert [r[0] for r in rows] == [499, 498, 497, 496]  # first + 1: is there a next page
        assert files_only.source(path, 1) is None and not files_only._loading  # budget 0: never loads
        assert files_only.run(*query.page_sql()).rows == rows
    finally:
        tight.close()
        files_only.close()


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 512 << 20), ("0", 0), ("1024", 1 << 30), ("0.5", 1 << 19)]
)
def test_the_snapshot_memory_budget_is_a_setting(tmp_path, value, expected) -> None:
    from meshcore.settings import Settings

    extra = {} if value is None else {"snapshot_memory_mb": value}
    assert (
        Settings(home=tmp_path, metadata_url="sqlite://", extra=extra).snapshot_memory_budget_bytes
        == expected
    )
    with pytest.raises(ValueError):
        _ = Settings(
            home=tmp_path, metadata_url="sqlite://", extra={"snapshot_memory_mb": "-1"}
        ).snapshot_memory_budget_bytes


def test_duckdb_threads_are_a_setting_shared_out_among_workers(tmp_path, monkeypatch) -> None:
    from meshcore.settings import Settings, available_cpus

    monkeypatch.delenv("CIVICMESH_DUCKDB_THREADS", raising=False)
    cpus = available_cpus()

    def settings(value: str | None) -> Settings:
        extra = {} if value is None else {"duckdb_threads": value}
        return Settings(home=tmp_path, metadata_url="sqlite://", extra=extra)

    assert settings(None).duckdb_threads == cpus
    assert settings(None).duckdb_threads_for(2) == max(1, cpus // 2)
    assert settings(None).duckdb_threads_for(4 * cpus) == 1  # never none
    assert settings("3").duckdb_threads_for(2) == 3  # an explicit setting is every worker's
    for wrong in ("0", "-1", "two", "1.5", "1025"):
        with pytest.raises(ValueError, match="CIVICMESH_DUCKDB_THREADS must be a whole number"):
            _ = settings(wrong).duckdb_threads
