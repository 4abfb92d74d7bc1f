"""Data product specs: read from the dbt manifest by one loader, the only source of product truth.

A product is a dbt model in a department group with `access: public` and `config.meta.civicmesh`.
Its spec travels with every snapshot into the catalog, so the gateway and the policies never read
dbt files themselves.

Product names are `<department>.<product>`: the dbt group and the model name (or `meta.civicmesh.product`).
A versioned model (dbt `versions:`) is served side by side, one product per version: its
`latest_version` keeps the plain name (`transportation.traffic_counts`), every other version is served
as `<product>_v<N>` (`transportation.traffic_counts_v1`). Adding a version therefore never renames the
product consumers already use: the plain name follows `latest_version` (as an unpinned dbt `ref` does),
and consumers that need the old shape read `_v<N>` until they migrate. Versions must be whole numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")
MASK_KINDS = ("redact", "hash", "partial", "generalize")
# `civicmesh product new` writes this at the start of a product's description; the loader refuses it
# until the owner describes the product (so a scaffold cannot publish undescribed).
PLACEHOLDER = "TODO(owner):"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
EMAIL_PATTERN = re.compile(r"^[^@\s,\]]+@[^@\s,\]]+$")


class ProductSpecError(ValueError):
    """A product's metadata is invalid; the message names the file and the field.

    `source` is the file, `field` the dotted path in it (`models.<model>.columns.<name>.data_type`),
    `detail` what is wrong: `civicmesh product check` turns the path into a line number."""

    def __init__(self, source: str, field: str, detail: str) -> None:
        super().__init__(f"{source}: {field}: {detail}")
        self.source, self.field, self.detail = source, field, detail


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    data_type: str
    description: str = ""
    tags: tuple[str, ...] = ()
    mask: str | None = None  # set for PII columns: one of MASK_KINDS
    deidentified_reason: str | None = None

    @property
    def pii(self) -> bool:
        return self.mask is not None


@dataclass(frozen=True)
class ProductSpec:
    department: str
    product: str
    classification: str
    owner: str
    description: str
    columns: tuple[ColumnSpec, ...]
    key: str | None = None
    scope_column: str | None = None
    freshness_sla_hours: float | None = None
    tags: tuple[str, ...] = ()
    version: int | None = None
    model_unique_id: str = ""
    # `meta.civicmesh.unscoped: "<reason>"`: the owner's reviewed decision that a product with a scope
    # column (e.g. `district`) serves every row to scoped readers (`policies.lint`, undeclared-scope);
    # beside a `scope_column`, why its other scope columns limit no reader.
    unscoped: str | None = None
    # `meta.civicmesh.declassified: "<reason>"`: the owner's reviewed decision that the product may be
    # less strictly classified than a product it is built from (an aggregate; `orchestration.gate`).
    declassified: str | None = None
    # `meta.civicmesh.cluster_by: ["opened_at desc", ...]`: the order (after the scope column, before
    # the key) the snapshot is written in, so the reads it fits stop after one page's rows
    # (`snapshot_order`, `gateway.query.PageQuery.presorted`).
    cluster_by: tuple[tuple[str, str], ...] = ()
    source_file: str = ""
    depends_on: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.department}.{self.product}"

    @property
    def pii_columns(self) -> dict[str, str]:
        return {c.name: c.mask for c in self.columns if c.mask is not None}

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)

    def to_json(self) -> str:
        data = asdict(self)
        # The JSON is a snapshot's spec identity (publish compares it): a field added later stays
        # out while unset, so specs published before it keep their identity.
        for later in ("unscoped", "declassified", "cluster_by"):
            if data[later] is None or data[later] == ():
                del data[later]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> ProductSpec:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        columns = tuple(ColumnSpec(**{**c, "tags": tuple(c.get("tags", ()))}) for c in data.pop("columns"))
        for key in ("tags", "depends_on"):
            data[key] = tuple(data.get(key, ()))
        data["cluster_by"] = tuple((str(c), str(d)) for c, d in data.get("cluster_by", ()))
        return cls(columns=columns, **data)


def _fail(source: str, where: str, message: str) -> ProductSpecError:
    return ProductSpecError(source, where, message)


class Problems(list[ProductSpecError]):
    """Every problem of one spec, in the order found (so `civicmesh product check` shows them all)."""

    def add(self, source: str, where: str, message: str) -> None:
        self.append(_fail(source, where, message))


def _model_meta(node: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(node.get("meta") or {})
    meta.update((node.get("config") or {}).get("meta") or {})
    return meta


@dataclass(frozen=True)
class ColumnClassification:
    """What a dbt column's yml says about personal data (models, seeds, snapshots and sources alike).

    Vocabulary (`meta` and `tags`, at the column or under its `config`): the `pii` tag, `meta.pii:
    true` or `meta.mask: redact|hash|partial|generalize` declare personal data (the mask is how a
    product serves it); `meta.deidentified: "<reason>"` is an owner's reviewed decision that a column
    derived from personal data is not personal data."""

    pii: bool = False
    mask: str | None = None
    deidentified: str | None = None
    tags: tuple[str, ...] = ()


def column_classification(column: Mapping[str, Any]) -> ColumnClassification:
    """The classification a column's yml declares (no validation: see `_column_spec`)."""
    config = column.get("config") or {}
    meta = {**(column.get("meta") or {}), **(config.get("meta") or {})}
    # Sorted: dbt merges a column's tags through a set, so their order changes from parse to parse,
    # and a spec's JSON (a snapshot's identity) must not.
    tags = tuple(sorted({*(column.get("tags") or ()), *(config.get("tags") or ())}))
    mask = meta.get("mask")
    pii = "pii" in tags or mask is not None or meta.get("pii") is True
    reason = meta.get("deidentified")
    return ColumnClassification(
        pii=pii,
        mask=str(mask) if mask is not None else None,
        deidentified=str(reason).strip() if reason else None,
        tags=tags,
    )


def _column_spec(source: str, model: str, column: Mapping[str, Any], problems: Problems) -> ColumnSpec:
    declared = column_classification(column)
    tags = declared.tags
    name = column["name"]
    where = f"models.{model}.columns.{name}"
    data_type = column.get("data_type")
    if not data_type:
        problems.add(source, f"{where}.data_type", "every product column needs a contract data_type")
    mask = declared.mask
    if declared.pii and mask is None:
        problems.add(source, f"{where}.meta.mask", f"pii column needs a mask kind, one of {MASK_KINDS}")
    if mask is not None:
        if mask not in MASK_KINDS:
            problems.add(source, f"{where}.meta.mask", f"unknown mask kind {mask!r}; use {MASK_KINDS}")
        if "pii" not in tags:
            tags = (*tags, "pii")
    if mask is not None and declared.deidentified:
        problems.add(source, f"{where}.meta.deidentified", "a column is either masked PII or de-identified")
    return ColumnSpec(
        name=name,
        data_type=str(data_type or "").lower(),
        description=column.get("description") or "",
        tags=tags,
        mask=mask,
        deidentified_reason=declared.deidentified,
    )


def _properties_file(node: Mapping[str, Any]) -> str:
    """The YAML file declaring the node's properties (where a fix goes), else its SQL file."""
    patch = node.get("patch_path") or ""  # "<package>://models/.../x.yml"
    if patch:
        return patch.split("://", 1)[-1]
    return str(node.get("original_file_path") or node.get("path") or node["unique_id"])


def _version_number(source: str, field: str, value: Any, problems: Problems) -> int | None:
    """A dbt model version (`v: 2`, `"2"`) as an int; product names need whole numbers."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit():
        problems.add(source, field, f"version {value!r} is not a whole number (products are named `_v<N>`)")
        return None
    return int(text)


def _owner(
    node: Mapping[str, Any], groups: Mapping[str, Any], group: str, source: str, problems: Problems
) -> str:
    group_node = groups.get(f"group.{node['package_name']}.{group}") or {}
    owner = (group_node.get("owner") or {}).get("email") or civicmesh_meta(node).get("owner")
    group_file = group_node.get("original_file_path") or source
    if not owner:
        problems.add(group_file, f"groups.{group}.owner.email", "every department group needs an owner email")
    elif not EMAIL_PATTERN.match(owner):
        problems.add(group_file, f"groups.{group}.owner.email", f"{owner!r} is not an email address")
    return str(owner or "")


def civicmesh_meta(node: Mapping[str, Any]) -> dict[str, Any]:
    """A dbt node's `meta.civicmesh` (node `meta` with its `config.meta` over it): the product
    metadata (README, "Shipping a data product")."""
    return _model_meta(node).get("civicmesh") or {}


def _check_meta(
    source: str,
    model: str,
    meta: Mapping[str, Any],
    columns: Sequence[ColumnSpec],
    problems: Problems,
) -> None:
    """The product fields under `config.meta.civicmesh` that name columns or hold numbers."""
    where = f"models.{model}.config.meta.civicmesh"
    names = {c.name for c in columns}
    if meta.get("classification") not in CLASSIFICATIONS:
        problems.add(
            source,
            f"{where}.classification",
            f"{meta.get('classification')!r} is not one of {CLASSIFICATIONS}",
        )
    for declared in meta.get("pii_columns") or ():
        if declared not in names:
            problems.add(source, f"{where}.pii_columns", f"PII column {declared!r} is not in the contract")
    for key in ("scope_column", "key"):
        value = meta.get(key)
        if value is not None and value not in names:
            problems.add(source, f"{where}.{key}", f"column {value!r} is not in the contract")
    sla = meta.get("freshness_sla_hours")
    if sla is not None and (isinstance(sla, bool) or not isinstance(sla, int | float) or sla <= 0):
        problems.add(source, f"{where}.freshness_sla_hours", "must be a positive number of hours")
    unscoped = meta.get("unscoped")
    if unscoped is not None and not (isinstance(unscoped, str) and unscoped.strip()):
        problems.add(source, f"{where}.unscoped", "the reason every scoped reader may see every row (text)")
    declassified = meta.get("declassified")
    if declassified is not None and not (isinstance(declassified, str) and declassified.strip()):
        message = "the reason it may be classified below a product it is built from (text)"
        problems.add(source, f"{where}.declassified", message)
    for message in parse_cluster_by(meta.get("cluster_by"), columns)[1]:
        problems.add(source, f"{where}.cluster_by", message)


SORT_DIRECTIONS = ("ASC", "DESC")  # of `cluster_by` and of the order a snapshot states


def parse_cluster_by(
    value: Any, columns: Sequence[ColumnSpec]
) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """`cluster_by: ["opened_at desc", "category"]` as ((column, ASC|DESC), ...) and what is wrong
    with it: not a list, an entry other than "<column> [asc|desc]", a column outside the contract
    or named twice, or personal data (such entries are left out). Personal data is refused
    because rows come back in stored order where no other order decides (a product without a
    key pages by file row number): a reader who sees the column masked would learn its order."""
    if value is None:
        return (), []
    if not isinstance(value, list):
        return (), ['a list such as ["opened_at desc"]']
    declared = {c.name: c for c in columns}
    out: dict[str, str] = {}
    wrong: list[str] = []
    for entry in value:
        words = entry.split() if isinstance(entry, str) else []
        direction = words[1].upper() if len(words) == 2 else "ASC"
        column = declared.get(words[0]) if words else None
        if not words or len(words) > 2 or direction not in SORT_DIRECTIONS:
            wrong.append(f'{entry!r} is not "<column> [asc|desc]"')
        elif column is None:
            wrong.append(f"column {words[0]!r} is not in the contract")
        elif column.pii:
            wrong.append(f"column {words[0]!r} is personal data: its order would show through its mask")
        elif words[0] in out:
            wrong.append(f"column {words[0]!r} is named twice")
        else:
            out[words[0]] = direction
    return tuple(out.items()), wrong


def collect_spec(node: Mapping[str, Any], groups: Mapping[str, Any]) -> tuple[ProductSpec, Problems]:
    """One manifest model node as a ProductSpec, with EVERY problem found in it. The spec is only
    valid when there is no problem; with problems it is what the yml says, for further checks."""
    problems = Problems()
    source = _properties_file(node)
    model = node["name"]
    meta = civicmesh_meta(node)
    group = node.get("group") or (node.get("config") or {}).get("group")
    if not group:
        problems.add(source, f"models.{model}.config.group", "a product must belong to a department group")
    elif not NAME_PATTERN.match(group):
        problems.add(source, f"models.{model}.config.group", f"{group!r} is not snake_case")
    owner = _owner(node, groups, group, source, problems) if group else ""
    contract = (node.get("config") or {}).get("contract") or {}
    if not contract.get("enforced"):
        problems.add(source, f"models.{model}.config.contract.enforced", "products need an enforced contract")
    columns = tuple(_column_spec(source, model, c, problems) for c in (node.get("columns") or {}).values())
    if not columns:
        problems.add(source, f"models.{model}.columns", "a product must declare its columns")
    _check_meta(source, model, meta, columns, problems)
    product = meta.get("product") or model
    if not NAME_PATTERN.match(product):
        problems.add(
            source, f"models.{model}.config.meta.civicmesh.product", f"{product!r} is not snake_case"
        )
    version = _version_number(source, f"models.{model}.versions.v", node.get("version"), problems)
    latest = _version_number(source, f"models.{model}.latest_version", node.get("latest_version"), problems)
    if version is not None and version != latest:
        product = f"{product}_v{version}"
    description = (node.get("description") or "").strip()
    if description.startswith(PLACEHOLDER):
        problems.add(
            source, f"models.{model}.description", "still the scaffold's placeholder: describe the product"
        )
    sla = meta.get("freshness_sla_hours")
    valid_sla = isinstance(sla, int | float) and not isinstance(sla, bool) and sla > 0
    spec = ProductSpec(
        department=str(group),
        product=product,
        classification=str(meta.get("classification")),
        owner=owner,
        description=description,
        columns=columns,
        key=meta.get("key"),
        scope_column=meta.get("scope_column"),
        freshness_sla_hours=float(sla) if valid_sla and sla is not None else None,
        tags=tuple(meta.get("tags") or ()),
        version=version,
        model_unique_id=node["unique_id"],
        source_file=source,
        depends_on=tuple((node.get("depends_on") or {}).get("nodes") or ()),
        unscoped=str(meta["unscoped"]).strip() if meta.get("unscoped") else None,
        declassified=str(meta["declassified"]).strip() if meta.get("declassified") else None,
        cluster_by=parse_cluster_by(meta.get("cluster_by"), columns)[0],
    )
    return spec, problems


def spec_from_node(node: Mapping[str, Any], groups: Mapping[str, Any]) -> ProductSpec:
    """Validate one manifest model node and turn it into a ProductSpec; raises its first problem."""
    spec, problems = collect_spec(node, groups)
    if problems:
        raise problems[0]
    return spec


def is_product_node(node: Mapping[str, Any]) -> bool:
    return (
        node.get("resource_type") == "model"
        and node.get("access") == "public"
        and "civicmesh" in _model_meta(node)
    )


def collect_product_specs(manifest: Mapping[str, Any] | Path) -> tuple[list[ProductSpec], Problems]:
    """Every valid product declared in a dbt manifest, and every problem of every other one (a
    product with a problem is left out; two products of one name are both problems)."""
    data: Mapping[str, Any] = json.loads(manifest.read_text()) if isinstance(manifest, Path) else manifest
    groups = data.get("groups") or {}
    specs, problems = [], Problems()
    for node in data["nodes"].values():
        if is_product_node(node):
            spec, found = collect_spec(node, groups)
            problems += found
            specs += [] if found else [spec]
    problems += duplicate_names(specs)
    return sorted(specs, key=lambda s: s.name), problems


def duplicate_names(specs: Sequence[ProductSpec]) -> Problems:
    """A problem for each product whose name another one declares too (`meta.civicmesh.product`
    can rename a model): both would publish as one product, so a build refuses the project."""
    problems = Problems()
    for spec in specs:
        others = [o.source_file for o in specs if o.name == spec.name and o is not spec]
        if others:
            where = f"models.{spec.model_unique_id.split('.')[2]}" if spec.model_unique_id else spec.name
            problems.add(spec.source_file, where, f"product name also declared by {', '.join(others)}")
    return problems


def load_product_specs(manifest: Mapping[str, Any] | Path) -> list[ProductSpec]:
    """Every product declared in a dbt manifest, validated; raises ProductSpecError on the first bad one."""
    specs, problems = collect_product_specs(manifest)
    if problems:
        raise problems[0]
    return specs


def specs_by_model(specs: Iterable[ProductSpec]) -> dict[str, ProductSpec]:
    return {s.model_unique_id: s for s in specs}
