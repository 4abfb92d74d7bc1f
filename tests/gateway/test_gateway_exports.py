"""Exports through real HTTP: same decision (action `export`), masks, row scope and `where`;
logged before the first byte."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq

from meshcore.accesslog import AccessLog
from meshcore.store import get_engine

SR = "public_works.service_requests"


def export(server, user: str | None, target: str, **params: str):
    headers = {"Authorization": f"Bearer {server.token(user)}"} if user else {}
    return server.client.get(f"/exports/{target}", params=params, headers=headers)


def test_owner_exports_csv_unmasked(server) -> None:
    response = export(server, "alice", f"{SR}.csv", where='{"district": {"eq": "D2"}}')
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 10 and {r["district"] for r in rows} == {"D2"}
    assert rows[0]["requester_name"].startswith("Person")


def test_scoped_supervisor_may_not_export(server) -> None:
    response = export(server, "dana", f"{SR}.csv")
    assert response.status_code == 403  # supervisors read, they do not export
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_parquet_and_json_formats(server) -> None:
    parquet = export(server, "alice", f"{SR}.parquet", where='{"priority": {"eq": 1}}')
    assert parquet.status_code == 200
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == 23 and "requester_name" in table.column_names
    lines = export(server, "alice", f"{SR}.json", limit="5").text.splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["request_id"]


def test_export_needs_the_export_right(server) -> None:
    # bob may read the internal product (masked) but holds no export right on it
    assert server.gql("{ publicWorks { serviceRequests { totalCount } } }", "bob")["data"]
    response = export(server, "bob", f"{SR}.csv")
    assert response.status_code == 403
    assert response.json()["errors"][0]["message"] != "No such product is available to you."


def test_hidden_or_missing_products_look_the_same(server) -> None:
    hidden = export(server, "mallory", "hr.salaries.csv")
    missing = export(server, "mallory", "hr.nothing.csv")
    assert hidden.status_code == missing.status_code == 403
    assert hidden.json() == missing.json()


def test_exports_are_logged_and_need_a_token(server) -> None:
    log = AccessLog(get_engine(server.settings.metadata_url))
    before = log.head()
    assert export(server, None, f"{SR}.csv").status_code == 401
    assert export(server, "alice", f"{SR}.csv", where='{"district": {"in": ["D1", "D2"]}}').status_code == 200
    assert export(server, "alice", f"{SR}.xml").status_code == 400
    rows = list(log.rows(after_seq=before))
    assert [r["status"] for r in rows] == [401, 200, 400]
    assert rows[1]["action"] == "export" and rows[1]["rows"] == 20 and rows[1]["decision"] == "allow"
