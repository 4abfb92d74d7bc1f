"""One place for OpenLineage names, so every producer in civicmesh names the same thing the same way.

Follows the OpenLineage naming spec (namespace = the datasource, name = the dataset inside it):
- landing files: namespace ``file``, name = absolute path (spec: "Local file system").
- DuckDB tables: namespace ``duckdb://{site}``, name ``{database}.{schema}.{table}`` (database = the
  warehouse file's stem). DuckDB is not in the spec's table; the authority is the site, not the
  warehouse's path, so lineage keeps joining when a home is moved or restored elsewhere. Events of
  older homes named the namespace by the absolute path (``duckdb:///…/warehouse.duckdb``);
  `stable_namespace` reads those as the site's.
- published products: namespace ``civicmesh://{site}``, name ``{department}.{product}``; a snapshot is
  a *version* of that dataset (datasetVersion facet = snapshot id), not a separate dataset, so the
  graph stays stable while data is republished.
- jobs: namespace ``civicmesh``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from meshcore import settings

JOB_NAMESPACE = "civicmesh"
# `.invalid` is reserved (RFC 2606): a URI that can never point at someone else's site. Replace both
# with the project's public repository URL once it has one.
PRODUCER = "https://civicmesh.invalid/lineage"
SCHEMA_BASE = "https://civicmesh.invalid/lineage/"
# civicmesh's custom facets (lineage.facets): keys prefixed with the producer's name.
ACCESS_FACET = "civicmesh_access"
PRODUCT_FACET = "civicmesh_product"
INGEST_FACET = "civicmesh_ingest"
RESERVED_PREFIX = "civicmesh_"  # facet keys only civicmesh writes; an external event may not carry them
FILE_NAMESPACE = "file"
DEFAULT_SITE = "local"
WAREHOUSE_FILE = "warehouse.duckdb"  # Settings.warehouse_path's file name
# Dagster run ids are uuid4 strings already; anything else is mapped into this uuid5 space so the
# same orchestrator run id always gives the same OpenLineage parent run id.
_RUN_ID_SPACE = uuid.UUID("6f1c0b7e-3c55-4d0a-9a43-5c1d1f0c1a11")


@dataclass(frozen=True, order=True)
class DatasetRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class JobRef:
    name: str
    namespace: str = JOB_NAMESPACE


@dataclass(frozen=True)
class ParentRef:
    """The run that spawned this one (a Dagster run, a dbt invocation), for the parent run facet."""

    run_id: str
    job_name: str
    namespace: str = JOB_NAMESPACE
    root_run_id: str | None = None
    root_job_name: str | None = None
    root_namespace: str = JOB_NAMESPACE


def dataset_uri(namespace: str, name: str) -> str:
    """The spec's combined form: `scheme://authority/name`, or `file:///path` for local files."""
    if "://" not in namespace:
        return f"{namespace}://{name}" if name.startswith("/") else f"{namespace}:{name}"
    return f"{namespace}/{name}"


def site() -> str:
    """`CIVICMESH_SITE`, default DEFAULT_SITE (meshcore.settings.site)."""
    return settings.site(DEFAULT_SITE)


def product_namespace() -> str:
    return f"civicmesh://{site()}"


def product_dataset(product_name: str) -> DatasetRef:
    """`product_name` is `<department>.<product>` (ProductSpec.name)."""
    return DatasetRef(product_namespace(), product_name)


def file_dataset(path: Path | str) -> DatasetRef:
    return DatasetRef(FILE_NAMESPACE, str(Path(path).expanduser().resolve()))


def duckdb_namespace(warehouse_path: Path | str) -> str:
    """The warehouse's namespace: the same wherever the home (and `warehouse_path`) lives."""
    return f"duckdb://{site()}"


def stable_namespace(namespace: str) -> str:
    """`namespace` as recorded today: a legacy ``duckdb:///<home>/warehouse.duckdb`` (a home's
    warehouse named by its absolute path) becomes the site's warehouse namespace; others unchanged."""
    if namespace.startswith("duckdb:///") and namespace.endswith(f"/{WAREHOUSE_FILE}"):
        return duckdb_namespace(namespace.removeprefix("duckdb://"))
    return namespace


def duckdb_dataset(warehouse_path: Path | str, relation: str) -> DatasetRef:
    """`relation` is `table`, `schema.table` or `database.schema.table` (quotes are stripped).

    Missing parts default the way DuckDB resolves them: database = the file's stem, schema = main.
    """
    parts = [p.strip().strip('"') for p in relation.split(".")]
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"not a DuckDB relation name: {relation!r}")
    defaults = [Path(warehouse_path).stem, "main"]
    full = defaults[: 3 - len(parts)] + parts
    return DatasetRef(duckdb_namespace(warehouse_path), ".".join(full))


def job(name: str) -> JobRef:
    return JobRef(name)


def ingest_job(raw_relation: str) -> JobRef:
    return JobRef(f"ingest.{raw_relation}")


def publish_job(product_name: str) -> JobRef:
    return JobRef(f"publish.{product_name}")


def dbt_model_job(package: str, model: str) -> JobRef:
    return JobRef(f"dbt.{package}.{model}")


def consumer_job(subject: str, export: bool = False) -> JobRef:
    """One consumer job per caller, so 'who consumed this product' is a downstream query."""
    return JobRef(f"consumer.{subject}.{'export' if export else 'read'}")


def as_run_id(value: str) -> str:
    """An orchestrator run id as an OpenLineage run id (a UUID), stable for the same input."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(_RUN_ID_SPACE, value))


def dagster_parent(dagster_run_id: str, job_name: str) -> ParentRef:
    """Parent facet for a run launched by Dagster: same run id, so the two can be matched."""
    return ParentRef(run_id=as_run_id(dagster_run_id), job_name=f"dagster.{job_name}")
