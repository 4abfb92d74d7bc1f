"""Best-effort column lineage from compiled SQL (sqlglot, DuckDB dialect) as OpenLineage column fields.

For each output column: the source columns it is computed from, and how — IDENTITY when it is the
same value passed through (renames and CTE hops included), AGGREGATION when an aggregate is on the
path, TRANSFORMATION otherwise; `masking` when a hash is applied (a hashed PII column is still
derived from PII, but pseudonymised). Columns sqlglot cannot resolve are left out, never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openlineage.client.generated import column_lineage_dataset as cl
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.qualify import qualify

from lineage import naming

log = logging.getLogger("civicmesh.lineage")

HASH_FUNCTIONS = {"md5", "sha1", "sha256", "sha2", "hash", "md5_number"}


def _expression(node: Node) -> exp.Expression:
    expression = node.expression
    return expression.this if isinstance(expression, exp.Alias) else expression


def _describe(path: list[Node]) -> tuple[str, str, bool, str | None]:
    """(type, subtype, masking, description) for the chain of nodes from output column to source."""
    subtype = "IDENTITY"
    masking = False
    description = None
    for node in path[:-1]:  # the last node is the source table itself
        expression = _expression(node)
        if isinstance(expression, exp.Column):
            continue
        if description is None:
            description = expression.sql(dialect="duckdb")[:200]
        if expression.find(exp.AggFunc) is not None:
            subtype = "AGGREGATION"
        elif subtype == "IDENTITY":
            subtype = "TRANSFORMATION"
        names = {f.sql_name().lower() for f in expression.find_all(exp.Func)}
        names |= {str(f.name).lower() for f in expression.find_all(exp.Anonymous)}
        masking = masking or bool(names & HASH_FUNCTIONS)
    return "DIRECT", subtype, masking, description


def _leaves(node: Node, path: list[Node]) -> list[list[Node]]:
    path = [*path, node]
    if not node.downstream:
        return [path] if isinstance(node.expression, exp.Table) else []
    found = []
    for child in node.downstream:
        found.extend(_leaves(child, path))
    return found


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    # sqlglot logs a warning for every scope it cannot resolve; best effort means we expect some.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def output_columns(sql: str, schema: dict[str, Any]) -> list[str] | None:
    """The columns a SELECT produces, with `*` expanded from `schema`; None if that is unknowable."""
    try:
        with _quiet_sqlglot():
            expression = qualify(
                parse_one(sql, dialect="duckdb"),
                schema=schema or None,
                dialect="duckdb",
                validate_qualify_columns=False,
            )
    except (SqlglotError, KeyError, ValueError) as exc:
        log.debug("column inference failed: %s", exc)
        return None
    names = list(expression.named_selects)
    return None if not names or "*" in names else names


def column_lineage(
    sql: str, output_columns: Sequence[str], schema: dict[str, Any], warehouse_path: Path | str
) -> dict[str, cl.Fields]:
    fields: dict[str, cl.Fields] = {}
    for column in output_columns:
        try:
            with _quiet_sqlglot():
                root = lineage(column, sql, schema=schema or None, dialect="duckdb")
        except (SqlglotError, KeyError, ValueError) as exc:
            log.debug("column lineage: %s not resolved: %s", column, exc)
            continue
        inputs: dict[tuple[str, str, str], cl.InputField] = {}
        descriptions = []
        for path in _leaves(root, []):
            table = path[-1].expression
            assert isinstance(table, exp.Table)
            relation = ".".join(p for p in (table.catalog, table.db, table.name) if p)
            dataset = naming.duckdb_dataset(warehouse_path, relation)
            source_column = path[-1].name.split(".")[-1]
            kind, subtype, masking, description = _describe(path)
            descriptions.append(description)
            key = (dataset.namespace, dataset.name, source_column)
            inputs[key] = cl.InputField(
                namespace=dataset.namespace,
                name=dataset.name,
                field=source_column,
                transformations=[
                    cl.Transformation(type=kind, subtype=subtype, description=description, masking=masking)
                ],
            )
        if inputs:
            fields[column] = cl.Fields(
                inputFields=list(inputs.values()),
                transformationDescription=next((d for d in descriptions if d), None),
                transformationType="MASKED"
                if any(t.masking for f in inputs.values() for t in f.transformations or ())
                else ("IDENTITY" if all(d is None for d in descriptions) else None),
            )
    return fields
