"""Column lineage that is exact or says it does not know, checked against DuckDB itself."""

from __future__ import annotations

import duckdb
import pytest

from lineage.sql_lineage import ModelLineage, duckdb_unique_names, model_lineage

A = "w.s.a"
B = "w.s.b"


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS w; CREATE SCHEMA w.s")
    con.execute("CREATE TABLE w.s.a (id integer, reporter_email varchar, Name varchar, district varchar)")
    con.execute("CREATE TABLE w.s.b (id integer, reporter_email varchar, name varchar)")
    return con


def _lineage(con: duckdb.DuckDBPyConnection, sql: str) -> ModelLineage:
    output = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM ({sql}\n) AS model").fetchall()]
    relations = {key: [r[0] for r in con.execute(f"DESCRIBE {key}").fetchall()] for key in (A, B)}
    return model_lineage(sql, relations, output)


def _inputs(lineage: ModelLineage, column: str) -> set[tuple[str, str, str, str]]:
    found = lineage.column(column)
    assert found is not None and found.unknown is None, found
    return {(f.relation.rsplit(".", 1)[-1], f.column, f.type, f.subtype) for f in found.inputs}


@pytest.mark.parametrize(
    "names",
    [["a", "a", "a"], ["a", "a", "a_1"], ["a_1", "a", "a"], ["X", "x", "x_1"], ["id", "Id", "ID", "id_2"]],
)
def test_duplicate_names_get_duckdbs_own_suffixes(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    select = ", ".join(f'{i} AS "{n}"' for i, n in enumerate(names))
    duckdb_names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM (SELECT {select})").fetchall()]
    assert duckdb_unique_names(names) == duckdb_names


def test_select_star_over_a_join_resolves_the_renamed_duplicate_to_its_side(con) -> None:
    for sql in (
        f"select * from {A} join {B} on a.id = b.id",
        f"with j as (select * from {A} join {B} on a.id = b.id) select * from j",
    ):
        lineage = _lineage(con, sql)
        assert [c.name for c in lineage.columns][-3:] == ["id_1", "reporter_email_1", "name_1"]
        assert _inputs(lineage, "reporter_email_1") == {("b", "reporter_email", "DIRECT", "IDENTITY")}
        assert _inputs(lineage, "reporter_email") == {("a", "reporter_email", "DIRECT", "IDENTITY")}


def test_identifiers_match_case_insensitively_and_keep_duckdbs_spelling(con) -> None:
    lineage = _lineage(con, f'select REPORTER_EMAIL as "ContactEmail", name as Foo from {A}')
    assert [c.name for c in lineage.columns] == ["ContactEmail", "Foo"]
    assert _inputs(lineage, "contactemail") == {("a", "reporter_email", "DIRECT", "IDENTITY")}
    assert _inputs(lineage, "Foo") == {("a", "Name", "DIRECT", "IDENTITY")}


def test_union_by_name_matches_by_name_not_position(con) -> None:
    sql = (
        f"select id, 'anonymous' as contact from {A} "
        f"union all by name select reporter_email as contact, id from {B}"
    )
    lineage = _lineage(con, sql)
    assert _inputs(lineage, "contact") == {("b", "reporter_email", "DIRECT", "IDENTITY")}
    assert _inputs(lineage, "id") == {("a", "id", "DIRECT", "IDENTITY"), ("b", "id", "DIRECT", "IDENTITY")}


def test_transformation_types_follow_the_openlineage_facet(con) -> None:
    lineage = _lineage(
        con,
        "select "
        "case when reporter_email like '%.gov' then 'gov' else 'other' end as kind, "
        "coalesce(reporter_email, name) as contact, "
        "row_number() over (partition by district order by id) as rank_in_district, "
        "md5(reporter_email) as reporter_key, "
        "id "
        f"from {A} where district <> 'D0' order by id",
    )
    assert _inputs(lineage, "kind") == {("a", "reporter_email", "INDIRECT", "CONDITIONAL")}
    assert _inputs(lineage, "contact") == {
        ("a", "reporter_email", "DIRECT", "TRANSFORMATION"),
        ("a", "Name", "DIRECT", "TRANSFORMATION"),
    }
    assert _inputs(lineage, "rank_in_district") == {
        ("a", "district", "INDIRECT", "WINDOW"),
        ("a", "id", "INDIRECT", "WINDOW"),
    }
    (key,) = lineage.column("reporter_key").inputs
    assert (key.type, key.subtype, key.masking) == ("DIRECT", "TRANSFORMATION", True)
    assert {(f.column, f.subtype) for f in lineage.dataset} == {("district", "FILTER"), ("id", "SORT")}


def test_aggregates_and_filters_through_ctes(con) -> None:
    lineage = _lineage(
        con,
        f"with c as (select id, reporter_email as mail, district from {A}) "
        "select district, min(mail) as first_mail, count(*) filter (where mail is not null) as with_mail "
        "from c group by district",
    )
    assert _inputs(lineage, "first_mail") == {("a", "reporter_email", "DIRECT", "AGGREGATION")}
    assert _inputs(lineage, "with_mail") == {("a", "reporter_email", "INDIRECT", "FILTER")}
    assert ("district", "GROUP_BY") in {(f.column, f.subtype) for f in lineage.dataset}


@pytest.mark.parametrize(
    "sql, because",
    [
        (f"select id, columns('reporter_.*') from {A}", "the parser reads columns"),
        (f"pivot {A} on district in ('D1') using count(*) group by id", "PIVOT/UNPIVOT"),
        (f"unpivot {A} on reporter_email, name into name k value v", "PIVOT/UNPIVOT"),
        (f"select * from {A} unpivot (v for k in (reporter_email, name))", "PIVOT/UNPIVOT"),
        (f"select id, (select max(name) from {B}) as m from {A}", "subquery"),
        ("select 1 as id, t.x from unnest([1, 2]) as t(x)", "Unnest"),
    ],
)
def test_what_cannot_be_resolved_is_unknown_with_the_reason(con, sql: str, because: str) -> None:
    lineage = _lineage(con, sql)
    unknown = [c for c in lineage.columns if c.unknown is not None]
    assert unknown and all(because in c.unknown for c in unknown if c.name != "id"), lineage


def test_a_relation_that_is_not_a_declared_input_is_unknown(con) -> None:
    sql = f"select id from {A}"
    lineage = model_lineage(sql, {B: ["id"]}, ["id"])
    assert "declared input" in lineage.column("id").unknown


def test_no_sql_makes_it_raise() -> None:
    for sql in ("select from where", "select 1; select 2", "", "create table x as select 1", "pivot"):
        lineage = model_lineage(sql, {}, ["x"])
        assert lineage.column("x").unknown, sql
    assert model_lineage("select 1 as x", {}, None).columns == ()


@pytest.mark.parametrize(
    "sql",
    [
        f"select id, to_json(t)::varchar as payload from {A} t",  # the whole row, every column in it
        f"select id, t::varchar as payload from {A} t",
        f"select id, #2 as payload from (select id, reporter_email from {A})",  # a position
        f"select id, reporter_email.upper() as payload from {A}",  # DuckDB's method-call syntax
        f"select id, (reporter_email).lower().upper() as payload from {A}",
    ],
)
def test_data_read_without_a_column_reference_is_unknown(con, sql: str) -> None:
    """sqlglot parses these as something other than a column (TableColumn, PositionalColumn, a bare
    identifier): before, `payload` had no inputs at all, so an e-mail behind it was no finding."""
    payload = _lineage(con, sql).column("payload")
    assert payload is not None and payload.inputs == ()
    assert "is not a column reference" in (payload.unknown or ""), payload


def test_names_that_are_not_references_stay_exact(con) -> None:
    lineage = _lineage(
        con,
        "select struct_pack(mail := reporter_email).mail as a, {'k': name}['k'] as b, "
        "count(*) over w as c "
        f"from {A} window w as (partition by district)",
    )
    assert _inputs(lineage, "a") == {("a", "reporter_email", "DIRECT", "TRANSFORMATION")}
    assert _inputs(lineage, "b") == {("a", "Name", "DIRECT", "TRANSFORMATION")}
    assert lineage.column("c").unknown is None
