"""Attack review of the key uniqueness gate (commit 0c0ec2e): what a careless owner's mart can hold
(NULL keys, a collation, a view, values that must not be quoted) and what the check does when it
cannot run. Real DuckDB warehouses; the gate on its own inputs, as test_gate.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from orchestration.gate import gate_products
from orchestration.transform import repeated_keys

SPEC = ProductSpec(
    "dept",
    "requests",
    "public",
    "o@city.example",
    "",
    (ColumnSpec("id", "varchar"), ColumnSpec("email", "varchar")),
    key="id",
    model_unique_id="model.p.requests",
)
MANIFEST = {
    "nodes": {
        "model.p.requests": {
            "unique_id": "model.p.requests",
            "name": "requests",
            "resource_type": "model",
            "depends_on": {"nodes": []},
            "relation_name": '"warehouse"."main"."requests"',
        }
    },
    "sources": {},
}
RUN = {"results": [{"unique_id": "model.p.requests", "status": "success"}]}


def _gate(tmp_path: Path, mart: str) -> Any:
    """The gate of SPEC after a build whose mart is `mart` (SQL run in the warehouse)."""
    settings = Settings(home=tmp_path, metadata_url="sqlite://")
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(mart)
    repeated = repeated_keys(settings, MANIFEST, [SPEC])
    return gate_products(MANIFEST, RUN, [SPEC], repeated_keys=repeated)[SPEC.name]


@pytest.mark.parametrize(
    ("values", "held"),
    [
        ("('a', 'x'), ('b', 'y')", False),
        ("('a', 'x'), (NULL, 'y')", False),  # one NULL key: it sorts last, alone
        ("('a', 'x'), (NULL, 'y'), (NULL, 'z')", True),  # two NULLs tie as a repeated value
        ("('a', 'x'), ('a', 'y')", True),
    ],
)
def test_null_keys_are_one_value(tmp_path: Path, values: str, held: bool) -> None:
    """Held: NULL keys tie with each other in the gateway's order (NULLS LAST), so two are a repeat."""
    gate = _gate(tmp_path, f"CREATE TABLE requests AS SELECT * FROM (VALUES {values}) t(id, email)")
    assert gate.held_back is held and (not held or [c.name for c in gate.failed] == ["key.id"])


def test_a_mart_that_is_a_view_is_checked(tmp_path: Path) -> None:
    """Held: a view mart is read like a table."""
    gate = _gate(
        tmp_path,
        "CREATE TABLE base AS SELECT 'a' AS id, 'x' AS email UNION ALL SELECT 'a', 'y'; "
        "CREATE VIEW requests AS SELECT * FROM base",
    )
    assert [c.name for c in gate.failed] == ["key.id"]


def test_a_nocase_key_is_held_back_though_the_gateway_tells_a_from_a(tmp_path: Path) -> None:
    """Held (on the safe side): a key column with `COLLATE NOCASE` groups 'A' with 'a', so the mart
    is held back, though its snapshot (Parquet keeps no collation) would page them apart."""
    gate = _gate(
        tmp_path,
        "CREATE TABLE requests (id VARCHAR COLLATE NOCASE, email VARCHAR); "
        "INSERT INTO requests VALUES ('A', 'x'), ('a', 'y')",
    )
    assert gate.held_back


def test_the_message_quotes_no_value_of_the_mart(tmp_path: Path) -> None:
    """Held: messages are served to anyone who may discover the product: no key value in them."""
    gate = _gate(
        tmp_path,
        "CREATE TABLE requests AS SELECT 'jane.doe@mail.example' AS id, 'x' AS email "
        "UNION ALL SELECT 'jane.doe@mail.example', 'y'",
    )
    assert gate.held_back and all("jane" not in c.message for c in gate.failed)


def test_a_key_check_that_cannot_run_holds_the_product_back(tmp_path: Path) -> None:
    """Fail closed: the model built (status success) but the check raised (here the mart reads a
    file that is gone by then; out of memory on a large GROUP BY or an interrupt alike). The error
    was swallowed and the product passed unchecked. It must be held back, and the message must not
    quote DuckDB's error (which can quote data)."""
    data = tmp_path / "rows.csv"
    data.write_text("id,email\nsecret-1,x\nsecret-1,y\n")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute(f"CREATE VIEW requests AS SELECT * FROM read_csv('{data}')")
    data.unlink()
    gate = _gate(tmp_path, "SELECT 1")
    assert gate.held_back
    assert [c.name for c in gate.failed] == ["key.id"]
    assert all("secret" not in c.message and str(data) not in c.message for c in gate.failed)
