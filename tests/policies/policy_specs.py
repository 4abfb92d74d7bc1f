"""The 9 demo products, built by hand for the policy tests (not read from the dbt manifest)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meshcore.products import ColumnSpec, ProductSpec


def col(name: str, data_type: str = "varchar", mask: str | None = None) -> ColumnSpec:
    return ColumnSpec(name=name, data_type=data_type, tags=("pii",) if mask else (), mask=mask)


def spec(
    name: str,
    classification: str,
    *columns: ColumnSpec,
    scope_column: str | None = None,
    unscoped: str | None = None,
) -> ProductSpec:
    department, product = name.split(".")
    return ProductSpec(
        department=department,
        product=product,
        classification=classification,
        owner=f"{department}@city.example",
        description=f"{name} for tests",
        columns=(col("id", "bigint"), *columns),
        scope_column=scope_column,
        unscoped=unscoped,
    )


DEMO_PRODUCTS: dict[str, ProductSpec] = {
    p.name: p
    for p in (
        spec(
            "public_works.service_requests",
            "internal",
            col("district"),
            col("category"),
            col("requester_name", mask="redact"),
            col("requester_email", mask="hash"),
            col("requester_phone", mask="partial"),
            scope_column="district",
        ),
        spec(
            "public_works.open_request_contacts",
            "confidential",
            col("district"),
            col("requester_name", mask="hash"),
            col("requester_email", mask="hash"),
            col("requester_phone", mask="partial"),
            scope_column="district",
        ),
        spec(
            "public_works.response_times",
            "public",
            col("district"),
            col("median_hours", "double"),
            unscoped="aggregates per district, published city-wide",
        ),
        spec("transportation.traffic_counts", "public", col("station"), col("count", "bigint")),
        spec(
            "transportation.collisions",
            "internal",
            col("severity"),
            col("lat", "double", mask="generalize"),
            col("lon", "double", mask="generalize"),
        ),
        spec("environment.air_quality", "public", col("station"), col("pm25", "double")),
        spec(
            "finance.vendor_payments",
            "confidential",
            col("vendor"),
            col("amount", "double"),
            col("account_number", mask="partial"),
        ),
        spec(
            "hr.employees",
            "restricted",
            col("department"),
            col("name", mask="hash"),
            col("email", mask="hash"),
            col("salary", "double", mask="redact"),
        ),
        spec(
            "city_ops.district_scorecard",
            "internal",
            col("district"),
            col("score", "double"),
            unscoped="built only from public products",
        ),
    )
}


def manifest_for(specs: Iterable[ProductSpec]) -> dict[str, Any]:
    """A minimal dbt manifest that `meshcore.products.load_product_specs` turns back into `specs`."""
    nodes: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for s in specs:
        groups[f"group.civicmesh.{s.department}"] = {"owner": {"email": s.owner}}
        meta: dict[str, Any] = {"classification": s.classification}
        if s.scope_column:
            meta["scope_column"] = s.scope_column
        if s.unscoped:
            meta["unscoped"] = s.unscoped
        unique_id = f"model.civicmesh.{s.product}"
        nodes[unique_id] = {
            "unique_id": unique_id,
            "resource_type": "model",
            "access": "public",
            "name": s.product,
            "package_name": "civicmesh",
            "group": s.department,
            "original_file_path": f"models/{s.department}/{s.product}.sql",
            "config": {"meta": {"civicmesh": meta}, "contract": {"enforced": True}},
            "columns": {
                c.name: {
                    "name": c.name,
                    "data_type": c.data_type,
                    "tags": list(c.tags),
                    "meta": {"mask": c.mask} if c.mask else {},
                }
                for c in s.columns
            },
        }
    return {"nodes": nodes, "groups": groups}
