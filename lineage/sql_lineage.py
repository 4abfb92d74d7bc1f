"""Column lineage of one compiled SELECT (DuckDB dialect) that is exact or says it does not know.

`model_lineage(sql, relations, output)` parses with sqlglot and resolves names the way DuckDB does:

- identifiers match case-insensitively (quoted ones too) and keep DuckDB's own spelling in the result;
- duplicate output names are renamed with DuckDB's rule (`x`, `x_1`, `x_2`, ... skipping names in use),
  in every subquery and CTE, so `select *` over a join resolves `reporter_email_1` to its real side;
- `union [all] by name` is matched by name (DuckDB: the left side's columns, then the new ones).

Every output column gets its source columns, each with an OpenLineage transformation (column
lineage facet 1-2-0): DIRECT/IDENTITY (passed through, renames and CTE hops included),
DIRECT/TRANSFORMATION, DIRECT/AGGREGATION, or INDIRECT/{FILTER, JOIN, GROUP_BY, SORT, WINDOW,
CONDITIONAL} for columns that decide which rows or which branch, not the value; `masking` when a
hash is applied. The dataset-wide INDIRECT inputs (WHERE, JOIN ... ON, GROUP BY, ORDER BY) are in
`ModelLineage.dataset`.

It never guesses: a column is *unknown* (with the reason) when the parser's output columns differ
from `output` (what DuckDB itself says the query returns), when a reference does not resolve to a
column of a declared input relation, or for constructs it cannot follow (PIVOT/UNPIVOT, COLUMNS(),
table functions, subqueries in the select list, a reference that is not a plain column — a whole row
`to_json(t)`, a position `#2`, a method call `email.upper()` —, any parser error). It never raises.
Cost is linear in the size of the SQL (macro-generated models run to hundreds of kB).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from sqlglot import exp, parse_one
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope

log = logging.getLogger("civicmesh.lineage")

HASH_FUNCTIONS = {"md5", "sha1", "sha256", "sha2", "hash", "md5_number"}
_DIRECT_RANK = {"IDENTITY": 0, "TRANSFORMATION": 1, "AGGREGATION": 2}
# Clauses of a SELECT whose columns decide the rows of the whole result (dataset-level INDIRECT).
_DATASET_CLAUSES = {"where": "FILTER", "having": "FILTER", "qualify": "FILTER", "group": "GROUP_BY"}
# Where an identifier in a select expression is a name (of a column, alias, table, struct field,
# lambda parameter, window), not a value. Anywhere else it is a reference sqlglot did not resolve to a
# column: DuckDB's method call `requester_email.upper()` parses as Dot(Identifier, upper()).
_NAME_POSITIONS = {
    (exp.Alias, "alias"),
    (exp.Column, "this"),
    (exp.Column, "table"),
    (exp.Column, "db"),
    (exp.Column, "catalog"),
    (exp.Dot, "expression"),
    (exp.PropertyEQ, "this"),
    (exp.Kwarg, "this"),
    (exp.Lambda, "expressions"),
    (exp.Window, "alias"),
    (exp.ColumnDef, "this"),
}
# References to data that are not a column: a whole row (`t`, `to_json(t)`) and a position (`#2`).
_NOT_COLUMNS = (exp.TableColumn, exp.PositionalColumn)


@dataclass(frozen=True)
class SourceField:
    """One input column of an output column: `relation` is `database.schema.table`, lower-case."""

    relation: str
    column: str
    type: str  # DIRECT | INDIRECT
    subtype: str
    masking: bool = False
    description: str | None = None


@dataclass(frozen=True)
class ColumnLineage:
    name: str  # DuckDB's spelling
    inputs: tuple[SourceField, ...] = ()
    unknown: str | None = None  # why the inputs are not known; None when they are exact

    @property
    def direct(self) -> tuple[SourceField, ...]:
        return tuple(f for f in self.inputs if f.type == "DIRECT")


@dataclass(frozen=True)
class ModelLineage:
    columns: tuple[ColumnLineage, ...]
    dataset: tuple[SourceField, ...] = ()

    def column(self, name: str) -> ColumnLineage | None:
        """Case-insensitive, as DuckDB resolves names."""
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)


class _Unknown(Exception):
    """A reference or construct whose lineage cannot be resolved exactly."""


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    # sqlglot warns for every scope it cannot resolve; we report those as unknown ourselves.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def duckdb_unique_names(names: Sequence[str]) -> list[str]:
    """DuckDB's names for a subquery's columns: a repeated name (case-insensitive) becomes
    `<name>_1`, `_2`, ... skipping names already taken (measured with duckdb 2.0)."""
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 0
        while candidate.lower() in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate.lower())
        unique.append(candidate)
    return unique


def model_lineage(
    sql: str, relations: Mapping[str, Sequence[str]], output: Sequence[str] | None
) -> ModelLineage:
    """Lineage of `sql`'s output columns.

    `relations`: {`database.schema.table` (lower-case): its columns in order}, the model's declared
    inputs as DuckDB has them; a reference to anything else is unknown. `output`: the query's
    columns as DuckDB names them (`DESCRIBE SELECT * FROM (<sql>)`); None means not known, and then
    nothing is."""
    if output is None:
        return ModelLineage(())
    try:
        with _quiet_sqlglot():
            tree = _qualified(sql, relations)
            names = duckdb_unique_names(tree.named_selects)
            if [n.lower() for n in names] != [o.lower() for o in output]:
                raise _Unknown(f"the parser reads columns {names}, DuckDB returns {list(output)}")
            root = build_scope(tree)
            if root is None:
                raise _Unknown("no SELECT to trace")
            tracer = _Tracer(relations)
            columns = tuple(tracer.output_column(root, i, name) for i, name in enumerate(output))
            return ModelLineage(columns, tracer.dataset(tree))
    except Exception as exc:  # any parser error means "unknown", never an aborted build
        reason = (
            str(exc) if isinstance(exc, _Unknown) else f"SQL not understood ({type(exc).__name__}: {exc})"
        )
        log.debug("column lineage unknown: %s", reason)
        return ModelLineage(tuple(ColumnLineage(name, unknown=reason) for name in output))


def _schema(relations: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    tree: dict[str, dict] = {}
    for key, columns in relations.items():
        database, schema, table = key.split(".")
        tree.setdefault(database, {}).setdefault(schema, {})[table] = {c.lower(): "UNKNOWN" for c in columns}
    return tree


def _qualified(sql: str, relations: Mapping[str, Sequence[str]]) -> exp.Query:
    tree = parse_one(sql, dialect="duckdb")
    if tree.find(exp.Pivot) is not None:
        raise _Unknown("PIVOT/UNPIVOT is not followed by the lineage parser")
    if not isinstance(tree, exp.Query):
        raise _Unknown(f"not a query: {type(tree).__name__}")
    schema = _schema(relations)
    # Qualify, give duplicate names DuckDB's suffixes, qualify again: sqlglot leaves a `*` over a
    # source with duplicate names unexpanded, the second pass expands it with the real names.
    for _ in range(4):
        tree = qualify(tree, schema=schema, dialect="duckdb", validate_qualify_columns=False)
        if not _rename_duplicates(tree):
            break
    for operation in reversed(list(tree.find_all(exp.SetOperation))):  # innermost first
        if operation.args.get("by_name"):
            _align_by_name(operation)
    return tree


def _rename_duplicates(tree: exp.Expression) -> bool:
    changed = False
    for select in tree.find_all(exp.Select):
        names = [e.alias_or_name for e in select.selects]
        for expression, name, unique in zip(select.selects, names, duckdb_unique_names(names), strict=True):
            if unique != name:
                expression.replace(exp.alias_(expression.unalias(), unique, quoted=True))
                changed = True
    return changed


def _leaf_selects(query: exp.Expression) -> list[exp.Select]:
    query = query.unnest()
    if isinstance(query, exp.SetOperation):
        return _leaf_selects(query.this) + _leaf_selects(query.expression)
    if not isinstance(query, exp.Select):
        raise _Unknown(f"{type(query).__name__} in a set operation")
    return [query]


def _reorder(query: exp.Expression, order: list[str]) -> None:
    """Give every SELECT of a positional branch the columns `order`, NULL where it has none."""
    names = [n.lower() for n in _leaf_selects(query)[0].named_selects]
    for select in _leaf_selects(query):
        selects = select.selects
        columns = [
            selects[names.index(name.lower())] if name.lower() in names else exp.alias_(exp.null(), name)
            for name in order
        ]
        select.set("expressions", columns)


def _align_by_name(operation: exp.SetOperation) -> None:
    """`a UNION [ALL] BY NAME b` as the positional union DuckDB runs: a's columns, then b's new ones."""
    left = _leaf_selects(operation.this)[0].named_selects
    right = _leaf_selects(operation.expression)[0].named_selects
    seen = {n.lower() for n in left}
    order = [*left, *(n for n in right if n.lower() not in seen)]
    _reorder(operation.this, order)
    _reorder(operation.expression, order)
    operation.set("by_name", None)


def _compose(outer: SourceField, inner: SourceField) -> SourceField:
    """An outer transformation applied on top of an inner one (the path from output to source)."""
    if outer.type == "INDIRECT":
        kind, subtype = outer.type, outer.subtype
    elif inner.type == "INDIRECT":
        kind, subtype = inner.type, inner.subtype
    else:
        kind = "DIRECT"
        subtype = max(outer.subtype, inner.subtype, key=_DIRECT_RANK.__getitem__)
    return replace(
        inner,
        type=kind,
        subtype=subtype,
        masking=outer.masking or inner.masking,
        description=outer.description or inner.description,
    )


def _description(root: exp.Expression) -> str | None:
    """The SQL of a select expression that is not a plain column, for the facet (200 characters)."""
    body = root.unalias() if isinstance(root, exp.Alias) else root
    return None if isinstance(body, exp.Column) else body.sql(dialect="duckdb")[:200]


def _unresolved(select: exp.Expression) -> str | None:
    """Why `select` reads data some other way than through `exp.Column`s, or None."""
    for node in select.walk():
        if isinstance(node, _NOT_COLUMNS) or (
            isinstance(node, exp.Identifier) and (type(node.parent), node.arg_key) not in _NAME_POSITIONS
        ):
            return f"{node.sql(dialect='duckdb')[:80]} in {select.alias_or_name} is not a column reference"
    return None


def _transformation(column: exp.Column, root: exp.Expression, description: str | None) -> SourceField:
    """How `column` contributes to the select expression `root` (walking up from the reference);
    `description` is `_description(root)`, computed once per expression."""
    direct, indirect, masking = "IDENTITY", None, False
    node: exp.Expression = column
    while node is not root and node.parent is not None:
        parent, key = node.parent, node.arg_key
        if isinstance(parent, exp.Window) and key in ("partition_by", "order"):
            indirect = indirect or "WINDOW"
        elif (isinstance(parent, exp.If) and key == "this") or (
            isinstance(parent, exp.Case) and key == "this"
        ):
            indirect = indirect or "CONDITIONAL"
        elif isinstance(parent, exp.Where | exp.Filter) and key != "this":
            indirect = indirect or "FILTER"
        elif isinstance(parent, exp.AggFunc):
            direct = "AGGREGATION"
        elif not isinstance(parent, exp.Alias | exp.Paren | exp.Window | exp.Where) and direct == "IDENTITY":
            direct = "TRANSFORMATION"
        if isinstance(parent, exp.Func):
            name = (parent.name if isinstance(parent, exp.Anonymous) else parent.sql_name()).lower()
            masking = masking or name in HASH_FUNCTIONS
        node = parent
    kind = ("INDIRECT", indirect) if indirect else ("DIRECT", direct)
    return SourceField("", column.name, kind[0], kind[1], masking, description)


class _Tracer:
    def __init__(self, relations: Mapping[str, Sequence[str]]) -> None:
        self.relations = {key: list(columns) for key, columns in relations.items()}

    def output_column(self, root: Scope, index: int, name: str) -> ColumnLineage:
        try:
            fields = self.column(root, index)
        except _Unknown as exc:
            return ColumnLineage(name, unknown=str(exc))
        return ColumnLineage(name, tuple(dict.fromkeys(fields)))

    def column(self, scope: Scope, index: int) -> list[SourceField]:
        """Source fields of the `index`-th output column of `scope`."""
        expression = scope.expression
        if isinstance(expression, exp.SetOperation):
            return [f for branch in scope.set_operation_scopes for f in self.column(branch, index)]
        if not isinstance(expression, exp.Select):
            raise _Unknown(f"cannot follow a {type(expression).__name__}")
        select = expression.selects[index]
        if any(not isinstance(star.parent, exp.Count) for star in select.find_all(exp.Star)):
            raise _Unknown(f"{select.sql(dialect='duckdb')[:80]} is not expanded")
        if select.find(exp.Columns) is not None:
            raise _Unknown("COLUMNS(...) is not followed by the lineage parser")
        if select.find(exp.Subquery, exp.Select) is not None:
            raise _Unknown(f"a subquery in {select.alias_or_name} is not followed")
        unresolved = _unresolved(select)
        if unresolved is not None:
            raise _Unknown(unresolved)
        fields = []
        description = _description(select)
        for column in select.find_all(exp.Column):
            fields += self.resolve(scope, column, _transformation(column, select, description))
        return fields

    def resolve(self, scope: Scope, column: exp.Column, how: SourceField) -> list[SourceField]:
        source = scope.sources.get(column.table) if column.table else None
        if isinstance(source, Scope):
            names = [n.lower() for n in (source.outer_columns or source.expression.named_selects)]
            if names.count(column.name.lower()) != 1:
                raise _Unknown(f"{column.sql(dialect='duckdb')} is not exactly one column of {column.table}")
            return [_compose(how, f) for f in self.column(source, names.index(column.name.lower()))]
        if isinstance(source, exp.Table):
            return [replace(how, relation=self._relation(source), column=self._table_column(source, column))]
        raise _Unknown(f"{column.sql(dialect='duckdb')} does not resolve to a declared input")

    def _relation(self, table: exp.Table) -> str:
        if not isinstance(table.this, exp.Identifier):
            raise _Unknown(f"table function {table.sql(dialect='duckdb')[:80]} is not followed")
        key = ".".join(p.lower() for p in (table.catalog, table.db, table.name))
        if key not in self.relations:
            raise _Unknown(f"{key} is not a declared input (ref or source) of this model")
        return key

    def _table_column(self, table: exp.Table, column: exp.Column) -> str:
        """The relation's own column (DuckDB's spelling), through `AS t(a, b)` column aliases."""
        columns = self.relations[self._relation(table)]
        aliases = [c.name.lower() for c in (table.args.get("alias") or exp.TableAlias()).columns]
        wanted = column.name.lower()
        if wanted in aliases and aliases.index(wanted) < len(columns):
            return columns[aliases.index(wanted)]
        # Columns past the alias list keep their own names (DuckDB).
        matches = [c for c in columns[len(aliases) :] if c.lower() == wanted]
        if wanted not in aliases and len(matches) == 1:
            return matches[0]
        raise _Unknown(f"{column.sql(dialect='duckdb')} is not a column of {self._relation(table)}")

    def dataset(self, tree: exp.Expression) -> tuple[SourceField, ...]:
        """Dataset-level INDIRECT inputs: columns in WHERE/HAVING/QUALIFY, GROUP BY, JOIN ON, ORDER BY."""
        found: list[SourceField] = []
        for scope in traverse_scope(tree):
            outputs = [n.lower() for n in getattr(scope.expression, "named_selects", ())]
            for clause, column in _clause_columns(scope.expression):
                how = SourceField("", column.name, "INDIRECT", clause)
                try:
                    if not column.table and column.name.lower() in outputs:  # ORDER BY an output alias
                        fields = self.column(scope, outputs.index(column.name.lower()))
                        found += [_compose(how, f) for f in fields]
                    else:
                        found += self.resolve(scope, column, how)
                except _Unknown:
                    continue  # row-deciding columns do not carry values; best effort is enough here
        return tuple(dict.fromkeys(found))


def _clause_columns(select: exp.Expression) -> Iterator[tuple[str, exp.Column]]:
    if not isinstance(select, exp.Select):
        return
    for key, subtype in _DATASET_CLAUSES.items():
        clause = select.args.get(key)
        if clause is not None:
            yield from ((subtype, c) for c in clause.find_all(exp.Column))
    for join in select.args.get("joins") or ():
        if join.args.get("on") is not None:
            yield from (("JOIN", c) for c in join.args["on"].find_all(exp.Column))
    if select.args.get("order") is not None:
        yield from (("SORT", c) for c in select.args["order"].find_all(exp.Column))
