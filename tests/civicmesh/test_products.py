"""The product-spec loader on the real dbt manifest, its refusals of invalid specs, and version naming."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshcore.products import (
    ColumnSpec,
    ProductSpec,
    ProductSpecError,
    load_product_specs,
    parse_cluster_by,
)

# Tests on the real manifest are `slow`: `dbt parse` of the project takes ~7 s (once per session).

SERVICE_REQUESTS = "model.civicmesh.service_requests"
SERVICE_REQUESTS_YML = "models/public_works/marts/service_requests.yml"

# product -> (classification, owner, scope column, PII columns and their masks)
EXPECTED = {
    "public_works.service_requests": (
        "internal",
        "alice@city.example",
        "district",
        {
            "address": "partial",
            "latitude": "generalize",
            "longitude": "generalize",
            "requester_name": "hash",
            "requester_email": "hash",
            "requester_phone": "partial",
        },
    ),
    "public_works.open_request_contacts": (
        "confidential",
        "alice@city.example",
        "district",
        {"requester_name": "hash", "requester_email": "hash", "requester_phone": "partial"},
    ),
    "public_works.response_times": ("public", "alice@city.example", None, {}),
    "transportation.traffic_counts": ("public", "tomas@city.example", None, {}),
    "transportation.traffic_counts_v1": ("public", "tomas@city.example", None, {}),
    "transportation.collisions": (
        "internal",
        "tomas@city.example",
        None,
        {"latitude": "generalize", "longitude": "generalize"},
    ),
    "environment.air_quality": ("public", "esther@city.example", None, {}),
    "finance.vendor_payments": (
        "confidential",
        "fiona@city.example",
        "department",
        {"account_number": "partial"},
    ),
    "hr.employees": (
        "restricted",
        "frank@city.example",
        None,
        {"full_name": "hash", "email": "hash", "phone": "redact", "salary": "redact"},
    ),
    "city_ops.district_scorecard": ("internal", "olivia@city.example", None, {}),
}


@pytest.fixture(scope="module")
def manifest(dbt_manifest: Path) -> dict[str, Any]:
    return json.loads(dbt_manifest.read_text())


@pytest.fixture(scope="module")
def specs(manifest: dict[str, Any]) -> dict[str, ProductSpec]:
    return {s.name: s for s in load_product_specs(manifest)}


@pytest.mark.slow
def test_the_ten_products_load_with_their_governance_metadata(specs: dict[str, ProductSpec]) -> None:
    assert set(specs) == set(EXPECTED)
    for name, (classification, owner, scope, masks) in EXPECTED.items():
        spec = specs[name]
        assert (spec.classification, spec.owner, spec.scope_column, spec.pii_columns) == (
            classification,
            owner,
            scope,
            masks,
        ), name
        assert spec.key and spec.column(spec.key), name
        assert spec.freshness_sla_hours and spec.description, name
        model = spec.model_unique_id.split(".")[2]  # model.<package>.<name>[.v<N>]
        assert spec.source_file == f"models/{spec.department}/marts/{model}.yml"
        assert all(c.data_type for c in spec.columns)
        assert all("pii" in c.tags for c in spec.columns if c.pii)


@pytest.mark.slow
def test_versioned_product_is_served_side_by_side(specs: dict[str, ProductSpec]) -> None:
    """traffic_counts v2 (latest) keeps the plain name; v1 is served beside it with its own contract."""
    latest, v1 = specs["transportation.traffic_counts"], specs["transportation.traffic_counts_v1"]
    assert (latest.version, latest.model_unique_id) == (2, "model.civicmesh.traffic_counts.v2")
    assert (v1.version, v1.model_unique_id) == (1, "model.civicmesh.traffic_counts.v1")
    common = ["count_id", "sensor_id", "district", "counted_at"]
    assert [c.name for c in v1.columns] == [
        *common,
        *["vehicle_count", "heavy_vehicle_count", "avg_speed_kmh", "is_weekend"],
    ]
    assert [c.name for c in latest.columns] == [
        *common,
        *["vehicles", "heavy_vehicles", "avg_speed_kmh", "is_weekend"],
    ]
    assert (v1.key, latest.key) == ("count_id", "count_id")
    assert "Version 1" in v1.description and "Version 2" in latest.description
    assert all(s.version is None for s in specs.values() if "traffic_counts" not in s.product)


@pytest.mark.slow
def test_cross_department_product_reads_only_other_departments_public_products(
    specs: dict[str, ProductSpec],
) -> None:
    by_model = {s.model_unique_id: s for s in specs.values()}
    parents = [by_model[uid] for uid in specs["city_ops.district_scorecard"].depends_on]
    assert {p.name for p in parents} == {
        "public_works.response_times",
        "transportation.traffic_counts_v1",  # pinned: ref('traffic_counts', v=1)
        "environment.air_quality",
    }
    assert all(p.classification == "public" and p.department != "city_ops" for p in parents)


@pytest.mark.slow
def test_spec_survives_the_catalog_json_round_trip(specs: dict[str, ProductSpec]) -> None:
    spec = specs["hr.employees"]
    assert ProductSpec.from_json(spec.to_json()) == spec
    clustered = specs["public_works.service_requests"]
    assert clustered.cluster_by == (("opened_at", "DESC"),)
    assert ProductSpec.from_json(clustered.to_json()) == clustered
    # A spec without `cluster_by` keeps the identity it had before the field existed.
    assert "cluster_by" not in json.loads(spec.to_json())


COLUMNS = (
    ColumnSpec("opened_at", "timestamp"),
    ColumnSpec("category", "varchar"),
    ColumnSpec("district", "varchar"),
    ColumnSpec("requester_name", "varchar", tags=("pii",), mask="hash"),
)


@pytest.mark.parametrize(
    ("declared", "order", "problems"),
    [
        (None, (), []),
        (["opened_at desc"], (("opened_at", "DESC"),), []),
        (["category", "opened_at DESC"], (("category", "ASC"), ("opened_at", "DESC")), []),
        (["opened_at  Asc"], (("opened_at", "ASC"),), []),
        ("opened_at desc", (), ['a list such as ["opened_at desc"]']),
        (["opened_at newest"], (), ["'opened_at newest' is not \"<column> [asc|desc]\""]),
        (["opened_at desc nulls"], (), ["'opened_at desc nulls' is not \"<column> [asc|desc]\""]),
        ([""], (), ["'' is not \"<column> [asc|desc]\""]),
        ([{"opened_at": "desc"}], (), ["{'opened_at': 'desc'} is not \"<column> [asc|desc]\""]),
        (["ward desc"], (), ["column 'ward' is not in the contract"]),
        (
            ["requester_name"],
            (),
            ["column 'requester_name' is personal data: its order would show through its mask"],
        ),
        (
            ["opened_at desc", "opened_at asc"],
            (("opened_at", "DESC"),),
            ["column 'opened_at' is named twice"],
        ),
    ],
)
def test_cluster_by_is_read_as_columns_and_directions(declared: Any, order: Any, problems: list[str]) -> None:
    assert parse_cluster_by(declared, COLUMNS) == (order, problems)


def _node(m: dict[str, Any]) -> dict[str, Any]:
    return m["nodes"][SERVICE_REQUESTS]


def _column(m: dict[str, Any], name: str) -> dict[str, Any]:
    return _node(m)["columns"][name]


def _civicmesh_meta(m: dict[str, Any]) -> list[dict[str, Any]]:
    # dbt copies model meta to both places; an edit must hit both to be seen.
    return [_node(m)["meta"]["civicmesh"], _node(m)["config"]["meta"]["civicmesh"]]


def _set_meta(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(m: dict[str, Any]) -> None:
        for meta in _civicmesh_meta(m):
            meta[key] = value

    return mutate


def _drop_mask(m: dict[str, Any]) -> None:
    column = _column(m, "requester_email")
    column["meta"].pop("mask")
    column["config"]["meta"].pop("mask")


def _drop_owner_email(m: dict[str, Any]) -> None:
    m["groups"]["group.civicmesh.public_works"]["owner"] = {"name": "Alice Moreau"}


def _unenforce_contract(m: dict[str, Any]) -> None:
    _node(m)["config"]["contract"]["enforced"] = False


def _untyped_column(m: dict[str, Any]) -> None:
    _column(m, "requester_name")["data_type"] = None


def _unknown_mask(m: dict[str, Any]) -> None:
    for meta in (_column(m, "requester_email")["meta"], _column(m, "requester_email")["config"]["meta"]):
        meta["mask"] = "scramble"


INVALID = {
    "unknown classification": (
        _set_meta("classification", "secret"),
        SERVICE_REQUESTS_YML,
        "models.service_requests.config.meta.civicmesh.classification",
    ),
    "pii column not in contract": (
        _set_meta("pii_columns", ["requester_ssn"]),
        SERVICE_REQUESTS_YML,
        "models.service_requests.config.meta.civicmesh.pii_columns",
    ),
    "pii without mask": (
        _drop_mask,
        SERVICE_REQUESTS_YML,
        "models.service_requests.columns.requester_email.meta.mask",
    ),
    "unknown mask kind": (
        _unknown_mask,
        SERVICE_REQUESTS_YML,
        "models.service_requests.columns.requester_email.meta.mask",
    ),
    "column without contract type": (
        _untyped_column,
        SERVICE_REQUESTS_YML,
        "models.service_requests.columns.requester_name.data_type",
    ),
    "scope column not in contract": (
        _set_meta("scope_column", "ward"),
        SERVICE_REQUESTS_YML,
        "models.service_requests.config.meta.civicmesh.scope_column",
    ),
    "cluster_by column not in contract": (
        _set_meta("cluster_by", ["ward desc"]),
        SERVICE_REQUESTS_YML,
        "models.service_requests.config.meta.civicmesh.cluster_by",
    ),
    "cluster_by direction": (
        _set_meta("cluster_by", ["opened_at newest"]),
        SERVICE_REQUESTS_YML,
        "models.service_requests.config.meta.civicmesh.cluster_by",
    ),
    "missing owner": (_drop_owner_email, "models/groups.yml", "groups.public_works.owner.email"),
    "unenforced contract": (
        _unenforce_contract,
        SERVICE_REQUESTS_YML,
        "models.service_requests.config.contract.enforced",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_spec_is_rejected_naming_file_and_field(manifest: dict[str, Any], case: str) -> None:
    mutate, file, field = INVALID[case]
    broken = copy.deepcopy(manifest)
    mutate(broken)
    with pytest.raises(ProductSpecError) as error:
        load_product_specs(broken)
    assert str(error.value).startswith(f"{file}: {field}: "), str(error.value)


# Version naming, on hand-written manifest nodes (no dbt needed).
GROUPS = {"group.civicmesh.transportation": {"owner": {"email": "tomas@city.example"}}}


def _versioned_node(version: Any, latest: Any, columns: list[str]) -> dict[str, Any]:
    return {
        "resource_type": "model",
        "unique_id": f"model.civicmesh.counts.v{version}",
        "name": "counts",
        "package_name": "civicmesh",
        "patch_path": "civicmesh://models/transportation/marts/counts.yml",
        "access": "public",
        "group": "transportation",
        "version": version,
        "latest_version": latest,
        "description": f"Counts, version {version}.",
        "config": {
            "contract": {"enforced": True},
            "meta": {"civicmesh": {"classification": "public", "key": "id"}},
        },
        "columns": {c: {"name": c, "data_type": "integer"} for c in ["id", *columns]},
    }


def _manifest(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {n["unique_id"]: n for n in nodes}, "groups": GROUPS}


def test_latest_version_keeps_the_plain_name_older_versions_get_a_suffix() -> None:
    specs = load_product_specs(
        _manifest(
            _versioned_node(1, 3, ["vehicle_count"]),
            _versioned_node(2, 3, ["vehicles"]),
            _versioned_node(3, 3, ["vehicles", "lane"]),
        )
    )
    by_name = {s.name: s for s in specs}
    assert set(by_name) == {"transportation.counts", "transportation.counts_v1", "transportation.counts_v2"}
    assert [(s.version, [c.name for c in s.columns]) for s in specs] == [
        (3, ["id", "vehicles", "lane"]),
        (1, ["id", "vehicle_count"]),
        (2, ["id", "vehicles"]),
    ]
    assert by_name["transportation.counts_v1"].model_unique_id == "model.civicmesh.counts.v1"


def test_adding_a_version_does_not_rename_the_latest() -> None:
    """Before: only v1 exists (it is the latest). After adding v2, v2 takes the plain name."""
    (only,) = load_product_specs(_manifest(_versioned_node(1, 1, ["vehicle_count"])))
    assert (only.name, only.version) == ("transportation.counts", 1)
    names = {
        s.name: s.version
        for s in load_product_specs(
            _manifest(_versioned_node(1, 2, ["vehicle_count"]), _versioned_node(2, 2, ["vehicles"]))
        )
    }
    assert names == {"transportation.counts": 2, "transportation.counts_v1": 1}


def test_string_versions_are_read_as_numbers() -> None:
    specs = load_product_specs(_manifest(_versioned_node("1", "2", ["a"]), _versioned_node("2", "2", ["b"])))
    assert {s.name: s.version for s in specs} == {"transportation.counts": 2, "transportation.counts_v1": 1}


def test_non_numeric_version_is_rejected_naming_file_and_field() -> None:
    with pytest.raises(ProductSpecError) as error:
        load_product_specs(_manifest(_versioned_node("1.5", "2", ["a"])))
    assert str(error.value).startswith("models/transportation/marts/counts.yml: models.counts.versions.v: ")


def test_a_versioned_name_clashing_with_another_product_is_rejected() -> None:
    clash = _versioned_node(1, 1, ["a"]) | {"unique_id": "model.civicmesh.counts_v1", "name": "counts_v1"}
    clash.pop("version")
    clash.pop("latest_version")
    with pytest.raises(ProductSpecError, match="product name also declared by"):
        load_product_specs(_manifest(_versioned_node(1, 2, ["a"]), _versioned_node(2, 2, ["b"]), clash))
