"""The product-spec loader on the real dbt manifest, and its refusals of invalid specs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from civicmesh.products import ProductSpec, ProductSpecError, load_product_specs

# `dbt parse` of the real project takes ~7 s (once per session).
pytestmark = pytest.mark.slow

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
    "public_works.response_times": ("public", "alice@city.example", None, {}),
    "transportation.traffic_counts": ("public", "tomas@city.example", None, {}),
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


def test_the_eight_products_load_with_their_governance_metadata(specs: dict[str, ProductSpec]) -> None:
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
        assert spec.source_file == f"models/{spec.department}/marts/{spec.product}.yml"
        assert all(c.data_type for c in spec.columns)
        assert all("pii" in c.tags for c in spec.columns if c.pii)


def test_cross_department_product_reads_only_other_departments_public_products(
    specs: dict[str, ProductSpec],
) -> None:
    by_model = {s.model_unique_id: s for s in specs.values()}
    parents = [by_model[uid] for uid in specs["city_ops.district_scorecard"].depends_on]
    assert {p.name for p in parents} == {
        "public_works.response_times",
        "transportation.traffic_counts",
        "environment.air_quality",
    }
    assert all(p.classification == "public" and p.department != "city_ops" for p in parents)


def test_spec_survives_the_catalog_json_round_trip(specs: dict[str, ProductSpec]) -> None:
    spec = specs["hr.employees"]
    assert ProductSpec.from_json(spec.to_json()) == spec


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
    "missing owner": (_drop_owner_email, "models/groups.yml", "groups.public_works.owner.email"),
    "unenforced contract": (
        _unenforce_contract,
        SERVICE_REQUESTS_YML,
        "models.service_requests.config.contract.enforced",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_spec_is_rejected_naming_file_and_field(manifest: dict[str, Any], case: str) -> None:
    mutate, file, field = INVALID[case]
    broken = copy.deepcopy(manifest)
    mutate(broken)
    with pytest.raises(ProductSpecError) as error:
        load_product_specs(broken)
    assert str(error.value).startswith(f"{file}: {field}: "), str(error.value)
