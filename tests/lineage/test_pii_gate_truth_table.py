"""Truth table of the PII gate: source classification x transformation x declaration -> decision.

Written by hand. Each mart derives three columns the same way from one source column (through a
staging model that passes everything on with `select *`) and declares them three ways: a mask (`m`),
a de-identification reason (`d`), nothing (`n`). The relations are real DuckDB views, described by
DuckDB itself, as in a build. Every input of a column's own expression carries PII, the INDIRECT ones
too (a CASE condition, an aggregate FILTER, a window partition decide the value: `case_spelling_the_value`
is how a macro copies an e-mail through conditions alone); the clauses that decide rows (WHERE,
HAVING, JOIN ON) carry nothing.

Decisions: ok (publishes, no finding), deid (publishes, the owner's reason recorded), PII (blocked:
derived from PII without a mask), UNK (blocked: lineage unknown, so it may be PII).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from lineage.classification import pii_findings
from lineage.dbt import NodeColumns, warehouse_columns
from meshcore.products import ColumnSpec, ProductSpec

SOURCE_COLUMN = {"pii": "c_pii", "plain": "c_plain", "undeclared": "c_undeclared"}
STG = '"w"."main"."stg"'
M, D, N = "m", "d", "n"
DIRECT_FROM_PII = ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK")
NOTHING_CARRIED = ("ok",) * 9
UNKNOWN = ("ok", "deid", "UNK") * 3

# kind: (compiled SQL with {c} the source column, the (mask, deid, none) output columns)
KINDS: dict[str, tuple[str, tuple[str, str, str]]] = {
    "identity": (f"select k, {{c}} as m, {{c}} as d, {{c}} as n from {STG}", (M, D, N)),
    "quoted_mixed_case_alias": (
        f'select k, {{c}} as "ContactM", {{c}} as "ContactD", {{c}} as "ContactN" from {STG}',
        ("ContactM", "ContactD", "ContactN"),
    ),
    "transformation": (
        f"select k, lower({{c}}) as m, upper({{c}}) as d, trim({{c}}) as n from {STG}",
        (M, D, N),
    ),
    "hash": (f"select k, md5({{c}}) as m, md5({{c}}) as d, sha256({{c}}) as n from {STG}", (M, D, N)),
    "aggregation": (
        f"select k, min({{c}}) as m, max({{c}}) as d, min({{c}}) as n from {STG} group by k",
        (M, D, N),
    ),
    "count_distinct": (
        f"select k, count(distinct {{c}}) as m, count(distinct {{c}}) as d, count(distinct {{c}}) as n "
        f"from {STG} group by k",
        (M, D, N),
    ),
    "case_result": (
        f"select k, case when k > 0 then {{c}} end as m, case when k > 0 then {{c}} end as d, "
        f"case when k > 0 then {{c}} else 'x' end as n from {STG}",
        (M, D, N),
    ),
    "coalesce": (
        f"select k, coalesce({{c}}, 'x') as m, coalesce({{c}}, 'x') as d, coalesce(null, {{c}}) as n "
        f"from {STG}",
        (M, D, N),
    ),
    "window_value": (
        f"select k, lag({{c}}) over (order by k) as m, lag({{c}}) over (order by k) as d, "
        f"first_value({{c}}) over (partition by k) as n from {STG}",
        (M, D, N),
    ),
    "star_over_join_duplicate": (
        f"with a as (select k, c_plain as m, c_plain as d, c_plain as n from {STG}), "
        f"b as (select k, {{c}} as m, {{c}} as d, {{c}} as n from {STG}) "
        "select * from a join b using (k)",
        ("m_1", "d_1", "n_1"),
    ),
    "union_all_by_name": (
        f"select k, c_plain as m, c_plain as d, c_plain as n from {STG} union all by name "
        f"select {{c}} as n, {{c}} as d, {{c}} as m, k from {STG}",
        (M, D, N),
    ),
    "case_condition": (
        f"select k, case when {{c}} is null then 'none' else 'some' end as m, "
        f"case when {{c}} like '%@%' then 1 end as d, case {{c}} when 'x' then 'y' end as n from {STG}",
        (M, D, N),
    ),
    "window_partition": (
        f"select k, row_number() over (partition by {{c}}) as m, rank() over (order by {{c}}) as d, "
        f"count(*) over (partition by {{c}}) as n from {STG}",
        (M, D, N),
    ),
    "case_spelling_the_value": (  # what a macro looping over positions and characters writes
        "select k, "
        + ", ".join(
            f"concat(case when substr({{c}}, 1, 1) = 'a' then 'a' "
            f"when substr({{c}}, 1, 1) = 'b' then 'b' end, "
            f"case when substr({{c}}, 2, 1) = 'a' then 'a' end) as {name}"
            for name in (M, D, N)
        )
        + f" from {STG}",
        (M, D, N),
    ),
    "aggregate_filter": (
        f"select k, count(*) filter (where {{c}} is not null) as m, max('a') filter (where {{c}} like 'a%') "
        f"as d, count(*) filter (where {{c}} = 'x') as n from {STG} group by k",
        (M, D, N),
    ),
    "rows_filter": (
        f"select k, count(*) as m, 1 as d, 'x' as n from {STG} "
        f"where {{c}} <> '' group by k having max({{c}}) > ''",
        (M, D, N),
    ),
    "join_on": (
        f"select a.k, b.c_plain as m, 'x' as d, 'y' as n from {STG} a join {STG} b on a.{{c}} = b.{{c}}",
        (M, D, N),
    ),
    "columns_regex": (
        f"with x as (select columns('^(k|{{c}})$') from {STG}) "
        "select k, {c} as m, {c} as d, {c} as n from x",
        (M, D, N),
    ),
    "unpivot": (
        f"with u as (unpivot (select k, {{c}} from {STG}) on {{c}} into name f value v) "
        "select k, v as m, v as d, v as n from u",
        (M, D, N),
    ),
    "pivot": (
        f"with p as (pivot (select k, {{c}} from {STG}) on k in (1) using max({{c}})) "
        'select "1" as m, "1" as d, "1" as n from p',
        (M, D, N),
    ),
    "scalar_subquery": (
        f"select k, (select max({{c}}) from {STG}) as m, (select max({{c}}) from {STG}) as d, "
        f"(select max({{c}}) from {STG}) as n from {STG}",
        (M, D, N),
    ),
    "relation_not_declared_as_input": (
        'select k, {c} as m, {c} as d, {c} as n from "w"."raw"."people"',  # not through source()/ref()
        (M, D, N),
    ),
}

#                               source:   pii                    plain               undeclared
#                               declared: mask  deid    none     mask  deid  none    mask  deid    none
TRUTH: dict[str, tuple[str, ...]] = {
    "identity":                       ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "quoted_mixed_case_alias":        ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "transformation":                 ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "hash":                           ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "aggregation":                    ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "count_distinct":                 ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "case_result":                    ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "coalesce":                       ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "window_value":                   ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "star_over_join_duplicate":       ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "union_all_by_name":              ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "case_condition":                 ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "case_spelling_the_value":        ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "window_partition":               ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "aggregate_filter":               ("ok", "deid", "PII", "ok", "ok", "ok", "ok", "deid", "UNK"),
    "rows_filter":                    ("ok", "ok",   "ok",  "ok", "ok", "ok", "ok", "ok",   "ok"),
    "join_on":                        ("ok", "ok",   "ok",  "ok", "ok", "ok", "ok", "ok",   "ok"),
    "columns_regex":                  ("ok", "deid", "UNK", "ok", "deid", "UNK", "ok", "deid", "UNK"),
    "unpivot":                        ("ok", "deid", "UNK", "ok", "deid", "UNK", "ok", "deid", "UNK"),
    "pivot":                          ("ok", "deid", "UNK", "ok", "deid", "UNK", "ok", "deid", "UNK"),
    "scalar_subquery":                ("ok", "deid", "UNK", "ok", "deid", "UNK", "ok", "deid", "UNK"),
    "relation_not_declared_as_input": ("ok", "deid", "UNK", "ok", "deid", "UNK", "ok", "deid", "UNK"),
}  # fmt: skip

CASES = [
    (kind, source, declared, TRUTH[kind][3 * s + d])
    for kind in TRUTH
    for s, source in enumerate(SOURCE_COLUMN)
    for d, declared in enumerate(("mask", "deidentified", "nothing"))
]
DECISION = {"undeclared_pii": "PII", "unknown_lineage": "UNK", "deidentified": "deid"}


def _column(name: str, **meta: Any) -> dict[str, Any]:
    tags = ["pii"] if meta else []
    return {
        "name": name,
        "data_type": "varchar",
        "meta": meta,
        "tags": tags,
        "config": {"meta": meta, "tags": tags},
    }


def _node(uid: str, schema: str, name: str, sql: str, parents: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "unique_id": uid,
        "resource_type": uid.split(".")[0],
        "database": "w",
        "schema": schema,
        "name": name,
        "alias": name,
        "compiled_code": sql,
        "depends_on": {"nodes": parents},
        "columns": {},
        **extra,
    }


def _project() -> tuple[dict[str, Any], list[ProductSpec]]:
    source = _node(
        "source.t.raw.people",
        "raw",
        "people",
        "",
        [],
        identifier="people",
        original_file_path="models/_sources.yml",
        # c_undeclared is in the landing file but not in the yml
        columns={"k": _column("k"), "c_pii": _column("c_pii", mask="hash"), "c_plain": _column("c_plain")},
    )
    nodes = {
        "model.t.stg": _node(
            "model.t.stg", "main", "stg", 'select * from "w"."raw"."people"', [source["unique_id"]]
        )
    }
    specs = []
    for kind, (template, (m, d, n)) in KINDS.items():
        for source_kind, column in SOURCE_COLUMN.items():
            name = f"{kind}__{source_kind}"
            uid = f"model.t.{name}"
            nodes[uid] = _node(uid, "main", name, template.format(c=column), ["model.t.stg"])
            declared = {
                m: ColumnSpec(m, "varchar", tags=("pii",), mask="hash"),
                d: ColumnSpec(d, "varchar", deidentified_reason="reviewed: not personal data"),
                n: ColumnSpec(n, "varchar"),
            }
            specs.append(
                ProductSpec(
                    "t", name, "public", "o@city.example", "", tuple(declared.values()), model_unique_id=uid
                )
            )
    return {"nodes": nodes, "sources": {source["unique_id"]: source}}, specs


def _warehouse(manifest: dict[str, Any]) -> dict[str, tuple[tuple[str, str], ...]]:
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS w")
    con.execute("CREATE SCHEMA w.raw")
    con.execute("CREATE TABLE w.raw.people (k integer, c_pii varchar, c_plain varchar, c_undeclared varchar)")
    for node in manifest["nodes"].values():
        con.execute(f"CREATE VIEW w.main.{node['name']} AS {node['compiled_code']}")
    return warehouse_columns(con, manifest)


@pytest.fixture(scope="module")
def decisions() -> dict[tuple[str, str], str]:
    """{(product, column lower-case): decision} for every mart column the gate has a finding on."""
    manifest, specs = _project()
    columns = NodeColumns(manifest, _warehouse(manifest))
    return {(f.product, f.column.lower()): DECISION[f.kind] for f in pii_findings(manifest, specs, columns)}


@pytest.mark.parametrize("kind, source, declared, expected", CASES)
def test_pii_gate_truth_table(
    decisions: dict[tuple[str, str], str], kind: str, source: str, declared: str, expected: str
) -> None:
    columns = dict(zip(("mask", "deidentified", "nothing"), KINDS[kind][1], strict=True))
    product = f"t.{kind}__{source}"
    assert decisions.get((product, columns[declared].lower()), "ok") == expected


def test_every_kind_of_the_table_is_built_and_no_finding_is_left_unexplained(decisions) -> None:
    explained = {
        (f"t.{kind}__{source}", column.lower())
        for kind, (_, triple) in KINDS.items()
        for source in SOURCE_COLUMN
        for column in triple
    }
    # the only other findings are the `k` column of marts whose whole lineage is unknown
    assert {(p, c) for p, c in decisions if (p, c) not in explained} <= {
        (f"t.{kind}__{source}", "k") for kind in KINDS for source in SOURCE_COLUMN
    }
    assert set(TRUTH) == set(KINDS)
