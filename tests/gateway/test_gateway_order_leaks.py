"""Attack review of "a file's row order must not show through a mask" (commit e637a9c).

Each test is what a hostile staff reader (cursors, `asOf`, exports) or a careless owner (specs,
marts) can do, and asserts what must hold: nothing served (row order, cursor values) tells the
relative order of a column masked for the reader, and pages follow each other without gaps or
repeats. Real DuckDB (the gateway's pool) over real Parquet files.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from gateway.duck import DuckPool
from gateway.query import Cursor, PageQuery
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import file_order, snapshot_order, write_snapshot
from policies.decision import RowFilter
from tests.gateway.masked_pages import masked_walk

D1 = RowFilter("district", ("D1",))
EMAIL = ColumnSpec("email", "varchar", tags=("pii",), mask="hash")


def _spec(key: str | None) -> ProductSpec:
    return ProductSpec(
        department="public_works",
        product="service_requests",
        classification="internal",
        owner="o@x.example",
        description="",
        columns=(ColumnSpec("ticket", "integer"), ColumnSpec("district", "varchar"), EMAIL),
        key=key,
        scope_column="district",
    )


def _publish(folder: Path, spec: ProductSpec, sql: str) -> str:
    """`sql` written as `spec`'s snapshot in its product's order, as publish writes a mart."""
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t AS {sql}")
        return str(write_snapshot(con, "t", folder, snapshot_order(spec)).path)


def _walk(pool: DuckPool, spec: ProductSpec, path: str, size: int) -> list[tuple[Any, Any]]:
    """Every D1 row of `path` (ticket, hashed e-mail, and the end cursor's last value after that
    row when `size` is 1) as a reader who sees `email` hashed, `size` rows a page, each page after
    the previous page's keyset cursor, as `reads.read_page` pages (the file's order as the pool
    reads it for `reads.read_page`: the product's key checked if the file does not state it unique)."""
    out: list[tuple[Any, Any]] = []
    for query, rows in masked_walk(pool, spec, path, pool.read_file_order(path, key=spec.key), size):
        if not rows:
            break
        after = query.end_cursor("s", rows[-1][2:], 0)
        assert after.keys is not None
        out += [(r[0], r[1], after.keys[-1]) for r in rows]
    return out


# Rows a masked reader cannot tell apart (same ticket, same district): only the e-mail differs,
# and the mart lists them in e-mail order.
TIED = """
SELECT 7 AS ticket, 'D1' AS district, 'u' || lpad(CAST(i AS VARCHAR), 3, '0') || '@mail.example' AS email
FROM range({n}) t(i) ORDER BY email
"""


def test_shuffle_values_of_two_snapshots_do_not_tell_where_a_row_sits_in_its_file(tmp_path: Path) -> None:
    """Two snapshots of a keyless product (say yesterday's with 60 rows and today's with 120,
    both read with `asOf`), every visible column tied, so a reader who sees the e-mail hashed
    pages both by `__row_shuffle`. The end cursors of one-row pages show each row's shuffle value.
    If that value is one function of the row number for every file, the values of the 60-row file
    are those of rows 0..59 of any file: the reader learns which of today's rows sit in the first
    half of the file, i.e. which e-mails sort first."""
    spec = _spec(key=None)
    small = _publish(tmp_path / "a", spec, TIED.format(n=60))
    big = _publish(tmp_path / "b", spec, TIED.format(n=120))
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        seen = {shuffle for _, _, shuffle in _walk(pool, spec, small, 1)}
        rows = _walk(pool, spec, big, 1)
        in_file = [r[0] for r in pool.run(f"SELECT cm_pseudonym(email) FROM '{big}'").rows]
    finally:
        pool.close()
    assert len(rows) == 120 and len({s for _, _, s in rows}) == 120
    guessed = {email for _, email, shuffle in rows if shuffle in seen}
    assert guessed != set(in_file[:60])
    assert len(guessed) < 10  # (values are 56 bits: two files share none, but by chance)


# A careless owner's `key` that is not unique (no dbt `unique` test): 400 tickets of 5 requesters
# each, the mart in e-mail order.
DUPLICATE_KEYS = """
SELECT CAST(i // 5 AS INTEGER) AS ticket, 'D1' AS district,
       lpad(CAST((i * 7919) % 2000 AS VARCHAR), 5, '0') || '@mail.example' AS email
FROM range(2000) t(i) ORDER BY email
"""


def _by_ticket(rows: list[tuple[Any, Any, Any]]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for ticket, email, _ in rows:
        out.setdefault(ticket, []).append(email)
    return out


def test_rows_sharing_a_non_unique_key_are_not_listed_in_the_masked_columns_order(tmp_path: Path) -> None:
    """A snapshot whose declared key (`ticket`, visible) repeats, written before builds checked
    keys (no uniqueness stated). Taken for unique, the key was the last sort term, a scoped
    reader's default page was read in stored order (`presorted`), and rows sharing a ticket came
    in the mart's e-mail order (76 of 400 tickets listed their 5 hashed e-mails in raw order). The
    pool finds the key repeats, so ties go on to the keyed shuffle."""
    spec = _spec(key="ticket")
    path = _publish(tmp_path, spec, DUPLICATE_KEYS)
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        rows = _walk(pool, spec, path, 2000)
        raw = dict(pool.run(f"SELECT cm_pseudonym(email), email FROM '{path}'").rows)
    finally:
        pool.close()
    groups = _by_ticket(rows)
    assert len(rows) == 2000 and len(groups) == 400
    in_email_order = [
        t for t, hashed in groups.items() if [raw[h] for h in hashed] == sorted(raw[h] for h in hashed)
    ]
    assert len(in_email_order) < 20  # 5 rows in order by chance: 1 in 120 (~3 of 400; 76 seen)


def test_pages_of_a_product_whose_key_is_not_unique_skip_no_rows(tmp_path: Path) -> None:
    """The same product paged 3 rows at a time with keyset cursors: a cursor holding only the
    last row's ticket started the next page after it (`ticket > 0`), dropping the ticket's other
    rows (1,200 of 2,000 served). Every row must be served once."""
    spec = _spec(key="ticket")
    path = _publish(tmp_path, spec, DUPLICATE_KEYS)
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        rows = _walk(pool, spec, path, 3)
    finally:
        pool.close()
    assert len(rows) == 2000


# Through real HTTP: a keyless product of the gateway's home whose rows tie on every visible
# column, the mart in e-mail order; bob (analyst of transportation: reads and exports, no
# `read_pii`) sees the e-mail hashed.
CONTACTS = ProductSpec(
    department="transportation",
    product="contacts",
    classification="internal",
    owner="tomas@city.example",
    description="Who to call back about a ticket.",
    scope_column="district",
    columns=(
        ColumnSpec("ticket", "integer", "Ticket"),
        ColumnSpec("district", "varchar", "City district"),
        ColumnSpec("email", "varchar", "Contact email", ("pii",), "hash"),
    ),
)
CONTACTS_SQL = TIED.format(n=300)


@pytest.fixture(scope="module")
def contacts(server: Any, gw_settings: Any, publish_product: Any) -> Any:
    publish_product(gw_settings, CONTACTS, CONTACTS_SQL)
    for _ in range(50):  # the new product is served within a second
        if "errors" not in _contacts(server, "first: 1"):
            return server
        time.sleep(0.1)
    raise AssertionError("the product was not served")


def _contacts(server: Any, args: str) -> dict[str, Any]:
    return _read(server, "transportation { contacts", args, "email", "bob")


def _read(server: Any, field: str, args: str, fields: str, user: str) -> dict[str, Any]:
    """`user`'s page of `field` ("<department> { <product>"): `fields` of its nodes, and pageInfo."""
    page = f"nodes {{ {fields} }} pageInfo {{ hasNextPage endCursor }}"
    response = server.post(f"{{ {field}({args}) {{ {page} }} }} }}", user)
    assert response.status_code in (200, 400), response.text
    body: dict[str, Any] = response.json()
    return body


def _cursor(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return data


def _hashed_in_file_order(server: Any) -> list[str]:
    path = next((server.settings.snapshots_dir / "transportation" / "contacts").glob("*.parquet"))
    pool = DuckPool(path.parent, server.settings.mask_key, threads=1)
    try:
        return [r[0] for r in pool.run(f"SELECT cm_pseudonym(email) FROM '{path}'").rows]
    finally:
        pool.close()


def test_a_masked_reader_pages_a_keyless_product_once_over_and_not_in_file_order(contacts: Any) -> None:
    """Held: bob pages every row 7 at a time with the end cursors: each row once, in the order
    one big page gives, which is not the file's (the e-mails'), and no cursor holds a row number."""
    whole = _contacts(contacts, "first: 1000")["data"]["transportation"]["contacts"]["nodes"]
    paged: list[str] = []
    after = ""
    while True:
        got = _contacts(contacts, f"first: 7{after}")["data"]["transportation"]["contacts"]
        paged += [n["email"] for n in got["nodes"]]
        cursor = _cursor(got["pageInfo"]["endCursor"])
        assert not set(cursor["k"]) & set(range(300))  # pseudonyms, not row numbers
        if not got["pageInfo"]["hasNextPage"]:
            break
        after = f', after: "{got["pageInfo"]["endCursor"]}"'
    in_file = _hashed_in_file_order(contacts)
    assert paged == [n["email"] for n in whole] and sorted(paged) == sorted(in_file)
    assert paged != in_file


def _forged(cursor: dict[str, Any], keys: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({**cursor, "k": keys}).encode()).decode().rstrip("=")


def test_a_forged_cursor_with_a_number_out_of_range_is_bad_input(contacts: Any) -> None:
    """Anyone can write a cursor. Its shuffle value (a BIGINT) set to 2**130, more than DuckDB's
    128-bit integers hold; a `responseHours` (double) value of 10**400, more than a double holds.
    A 400 BAD_USER_INPUT, not a 500 (the first was a DuckDB InvalidInputException, the second an
    OverflowError)."""
    got = _contacts(contacts, "first: 1")["data"]["transportation"]["contacts"]
    cursor = _cursor(got["pageInfo"]["endCursor"])
    for value in (2**130, -(2**130)):
        body = _contacts(contacts, f'first: 1, after: "{_forged(cursor, [value])}"')
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    order = "orderBy: [{responseHours: DESC}]"
    requests = "publicWorks { serviceRequests"
    got = _read(contacts, requests, f"first: 1, {order}", "requestId", "dana")
    cursor = _cursor(got["data"]["publicWorks"]["serviceRequests"]["pageInfo"]["endCursor"])
    after = _forged(cursor, [10**400, cursor["k"][1]])
    body = _read(contacts, requests, f'first: 1, {order}, after: "{after}"', "requestId", "dana")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


def test_an_export_of_a_keyless_product_is_not_in_file_order(contacts: Any) -> None:
    """Held: an export (no `read_pii`) lists the rows in the shuffled order, not the e-mails'."""
    response = contacts.client.get(
        "/exports/transportation.contacts.json", headers={"Authorization": f"Bearer {contacts.token('bob')}"}
    )
    assert response.status_code == 200, response.text
    shown = [json.loads(line)["email"] for line in response.text.splitlines()]
    in_file = _hashed_in_file_order(contacts)
    assert sorted(shown) == sorted(in_file) and shown != in_file


def test_a_scoped_readers_cursors_do_not_count_the_rows_of_other_districts(tmp_path: Path) -> None:
    """A keyless product whose visible columns tell every row apart (the file states its order
    depends on them only, so rows tie-break on the file row number, no shuffle). A supervisor of
    D3 pages her rows; the file holds D1's 137 rows first. Cursors carrying file row numbers would
    start at 137, how many rows of a district she may not read exist (her `totalCount` never
    includes them): hers count her own rows only (offset form), and page through them all once."""
    spec = _spec(key=None)
    path = _publish(
        tmp_path,
        spec,
        "SELECT CAST(i AS INTEGER) AS ticket, CASE WHEN i < 137 THEN 'D1' ELSE 'D3' END AS district, "
        "'u' || i || '@mail.example' AS email FROM range(200) t(i)",
    )
    with duckdb.connect() as con:
        order = file_order(con, path)
    assert order.ordered_by == {"district", "ticket"}
    pool = DuckPool(tmp_path, "key", threads=1)
    cursors: list[Any] = []
    tickets: list[int] = []
    try:
        offset = 0
        while True:
            query = PageQuery(
                spec=spec,
                path=path,
                columns=["ticket"],
                masks={"email": "hash"},
                row_filter=RowFilter("district", ("D3",)),
                limit=10,
                offset=offset,
                with_keys=True,
                file_order=order,
            )
            rows = pool.run(*query.page_sql()).rows
            assert all(len(r) == 1 for r in rows)  # no sort key values come back
            tickets += [r[0] for r in rows[:10]]
            if len(rows) <= 10:
                break
            cursor = Cursor.decode(query.end_cursor("s", None, offset + 10).encode())
            cursors.append(cursor)
            offset = cursor.offset
    finally:
        pool.close()
    assert tickets == list(range(137, 200))
    assert all(c.keys is None and c.offset == 10 * (i + 1) for i, c in enumerate(cursors)), cursors


def test_the_hot_copy_and_the_file_page_in_one_shuffled_order(tmp_path: Path) -> None:
    """Held: a page walk that starts on the file and goes on in the hot copy (loaded meanwhile),
    or the reverse (evicted), must not repeat or skip rows: the shuffle is one order for both."""
    spec = _spec(key=None)
    path = _publish(tmp_path, spec, TIED.format(n=120))
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        deadline = time.monotonic() + 60
        while (table := pool.source(path, Path(path).stat().st_size)) is None:
            assert path not in pool._unfit and time.monotonic() < deadline
            time.sleep(0.02)
        with duckdb.connect() as con:
            order = file_order(con, path)
        pages = []
        for source in (None, table):
            query = PageQuery(
                spec=spec,
                path=path,
                table=source,
                columns=["email"],
                masks={"email": "hash"},
                row_filter=D1,
                limit=200,
                with_keys=True,
                file_order=order,
            )
            pages.append(pool.run(*query.page_sql()).rows)
    finally:
        pool.close()
    assert len(pages[0]) == 120 and pages[0] == pages[1]
