"""Integrity when reading, over real HTTP: a snapshot file with one flipped byte, or truncated, is
never served (GraphQL rows, aggregates, exports: `UNAVAILABLE` naming the product, not the file);
the request leaves one access-log record, the server logs the file, the catalog marks the snapshot
broken, `/readyz` fails, and `civicmesh snapshots verify` names it. Restored, it serves again."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from civicmesh.cli import main
from meshcore.accesslog import AccessLog
from meshcore.catalog import Catalog, Snapshot
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.store import get_engine

PAYMENTS = ProductSpec(
    department="environment",
    product="grant_payments",
    classification="public",
    owner="esther@city.example",
    description="Environmental grants paid out.",
    key="payment_id",
    columns=(ColumnSpec("payment_id", "integer"), ColumnSpec("amount", "double")),
)
# Amounts that do not compress: zstd stores them as they are, so a flipped byte reads as another number.
SQL = (
    "SELECT CAST(i AS INTEGER) AS payment_id, CAST((hash(i) % 1000000) / 100.0 AS DOUBLE) AS amount "
    "FROM range(2000) t(i)"
)
ROWS = "{ environment { grantPayments%s { totalCount nodes { paymentId amount } snapshot { id } } } }"
AGGREGATE = "{ environment { grantPaymentsAggregate%s { groups { count top: max(column: AMOUNT) } } } }"


_unique = itertools.count(1)


def _unique_where() -> str:
    return f"(where: {{paymentId: {{gt: -{next(_unique)}}}}})"


def _amounts(path: Path) -> list[float] | None:
    """The amounts DuckDB reads from `path`, or None if it cannot read the file at all."""
    try:
        return [r[0] for r in duckdb.sql(f"SELECT amount FROM read_parquet('{path}')").fetchall()]
    except duckdb.Error:
        return None


def _flip_a_byte_silently(path: Path, scratch: Path) -> None:
    """Flip one byte of `path` so that it still reads as Parquet, with different values (the issue's
    `amount -2.0e16` case: only the checksum can tell)."""
    good = _amounts(path)
    data = path.read_bytes()
    for offset in range(len(data) // 2, 4, -1):
        candidate = bytearray(data)
        candidate[offset] ^= 0x40
        scratch.write_bytes(bytes(candidate))
        read = _amounts(scratch)
        if read is not None and read != good:
            path.write_bytes(bytes(candidate))
            return
    raise AssertionError("no single-byte flip reads as different data")


@pytest.fixture
def snapshot(server, publish_product, tmp_path: Path) -> Iterator[Snapshot]:
    """A fresh product snapshot; afterwards its file is restored and the mark lifted, so the
    session's gateway is ready again for the tests that follow."""
    snap = publish_product(server.settings, PAYMENTS, SQL)
    original = tmp_path / "original.parquet"
    shutil.copyfile(snap.path, original)
    deadline = time.monotonic() + 10
    while "errors" in server.gql(ROWS % "(first: 1)", "mallory") and time.monotonic() < deadline:
        time.sleep(0.2)  # until the gateway has picked the product up
    yield snap
    shutil.copyfile(original, snap.path)
    Catalog(get_engine(server.settings.metadata_url)).clear_broken(snap.id)


@pytest.fixture
def cli(server, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CIVICMESH_HOME", str(server.settings.home))
    monkeypatch.delenv("CIVICMESH_METADATA_URL", raising=False)
    return main


def _export(server, fmt: str = "csv"):
    headers = {"Authorization": f"Bearer {server.token('esther')}"}  # environment's owner
    return server.client.get(f"/exports/{PAYMENTS.name}.{fmt}", headers=headers)


def _assert_refused(server, snap: Snapshot) -> None:
    log = AccessLog(get_engine(server.settings.metadata_url))
    head = log.head()
    # a request body not seen before: a cached response (of the data as verified) would not read
    body = server.gql(ROWS % _unique_where(), "mallory")
    assert body["data"]["environment"]["grantPayments"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAVAILABLE"
    assert PAYMENTS.name in error["message"]
    assert str(snap.path.parent) not in error["message"] and ".parquet" not in error["message"]
    [record] = list(log.rows(after_seq=head))  # one record for the request, with the code
    assert (record["product"], record["snapshot_id"]) == (PAYMENTS.name, snap.id)
    assert (record["error_code"], record["rows"]) == ("UNAVAILABLE", None)
    aggregate = server.gql(AGGREGATE % _unique_where(), "mallory")
    assert aggregate["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    for fmt in ("csv", "parquet"):
        exported = _export(server, fmt)
        assert exported.status_code == 503
        assert exported.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"


def _assert_marked_broken(server, snap: Snapshot, detail: str) -> None:
    catalog = Catalog(get_engine(server.settings.metadata_url))
    [broken] = catalog.broken_snapshots(PAYMENTS.name)
    assert broken.id == snap.id and detail in broken.broken
    deadline = time.monotonic() + 10
    while True:  # the product is marked broken in the catalog, as the gateway serves it
        body = server.gql(
            f'{{ product(name: "{PAYMENTS.name}") {{ integrity {{ status '
            "brokenSnapshots { id current broken } } } }",
            "mallory",
        )
        integrity = body["data"]["product"]["integrity"]
        if integrity["status"] == "broken" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert integrity["status"] == "broken"
    assert integrity["brokenSnapshots"] == [{"id": snap.id, "current": True, "broken": broken.broken}]
    ready = server.client.get("/readyz")
    assert ready.status_code == 503
    check = ready.json()["checks"]["snapshots"]
    assert not check["ok"] and PAYMENTS.name in check["detail"] and snap.id in check["detail"]


def test_a_flipped_byte_is_never_served(server, snapshot, tmp_path: Path, cli, capsys, caplog) -> None:
    _flip_a_byte_silently(snapshot.path, tmp_path / "scratch.parquet")
    with caplog.at_level(logging.ERROR, logger="gateway.integrity"):
        _assert_refused(server, snapshot)
    [logged] = [r for r in caplog.records if r.name == "gateway.integrity"]  # once, not per request
    assert str(snapshot.path) in logged.getMessage() and "checksum mismatch" in logged.getMessage()
    _assert_marked_broken(server, snapshot, "checksum mismatch")

    assert cli(["snapshots", "verify", PAYMENTS.name]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN  {snapshot.id}  {snapshot.path}: checksum mismatch" in out


def test_a_file_truncated_after_its_first_check_is_checked_again_and_refused(
    server, snapshot, cli, capsys
) -> None:
    checks = server.server.config.app.state.gateway.duck.checks
    server.gql(ROWS % _unique_where(), "mallory")  # opened (and checked) by this process by now
    hashed = checks.hashed[snapshot.id]
    for _ in range(3):
        body = server.gql(ROWS % _unique_where(), "mallory")
        assert body["data"]["environment"]["grantPayments"]["totalCount"] == 2000
    assert _export(server).status_code == 200
    assert checks.hashed[snapshot.id] == hashed  # once per (process, snapshot), not per request
    data = snapshot.path.read_bytes()
    snapshot.path.write_bytes(data[: len(data) // 2])
    _assert_refused(server, snapshot)
    assert checks.hashed[snapshot.id] == hashed + 1  # the file changed: checked again
    _assert_marked_broken(server, snapshot, f"size {len(data) // 2} B, expected {len(data)} B")
    assert cli(["snapshots", "verify"]) == 1
    assert f"BROKEN  {snapshot.id}  {snapshot.path}: size" in capsys.readouterr().out


def test_a_file_changed_in_place_with_its_mtime_put_back_is_checked_again_and_refused(
    server, snapshot, tmp_path: Path
) -> None:
    """Attack: change the file after its first check keeping its size, inode and mtime (`os.utime`
    sets it back), all the per-read `os.stat` compared. Its ctime, which only the kernel sets,
    still tells: the file is checked again and refused."""
    server.gql(ROWS % _unique_where(), "mallory")  # opened (and checked) by this process by now
    before = snapshot.path.stat()
    _flip_a_byte_silently(snapshot.path, tmp_path / "scratch.parquet")
    os.utime(snapshot.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = snapshot.path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    _assert_refused(server, snapshot)


def test_a_restored_file_serves_again_and_the_mark_is_lifted(
    server, snapshot, tmp_path: Path, cli, capsys
) -> None:
    original = snapshot.path.read_bytes()
    _flip_a_byte_silently(snapshot.path, tmp_path / "scratch.parquet")
    _assert_refused(server, snapshot)
    snapshot.path.write_bytes(original)  # restored from a backup
    assert cli(["snapshots", "verify", PAYMENTS.name]) == 0
    assert "broken mark lifted" in capsys.readouterr().out
    body = server.gql(ROWS % "", "mallory")
    assert body["data"]["environment"]["grantPayments"]["totalCount"] == 2000
    deadline = time.monotonic() + 10
    while server.client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.client.get("/readyz").json()["checks"]["snapshots"]["ok"] is True
