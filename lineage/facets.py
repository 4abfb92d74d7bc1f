"""civicmesh's custom OpenLineage facets: what no standard facet carries (the access decision).

Custom facets follow the spec's rules: they extend a base facet (so `_producer` and `_schemaURL` are
set) and their keys are prefixed with the producer's name (`civicmesh_…`). Their JSON schemas ship in
`lineage/civicmesh_facets.json` so a consumer can validate them; `_schemaURL` points into that file.
"""

from __future__ import annotations

from typing import Any

import attr
from openlineage.client.generated.base import DatasetFacet, RunFacet

# The names live in lineage.naming (importable without openlineage-python); re-exported here.
from lineage.naming import (  # noqa: F401
    ACCESS_FACET,
    INGEST_FACET,
    PRODUCER,
    PRODUCT_FACET,
    RESERVED_PREFIX,
    SCHEMA_BASE,
)


@attr.define
class AccessDecisionRunFacet(RunFacet):
    """Why a read was allowed (or not): the rule, the policy version and what was hidden."""

    requestId: str
    subject: str
    action: str
    allowed: bool
    reason: str
    policyVersion: str
    rule: str | None = attr.field(default=None)
    ruleSource: str | None = attr.field(default=None)  # where that rule lives, e.g. "policy.csv:12"
    masks: dict[str, str] = attr.field(factory=dict)
    rowFilter: dict[str, Any] | None = attr.field(default=None)
    rowsReturned: int | None = attr.field(default=None)
    exportFormat: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_BASE + "civicmesh_facets.json#/$defs/AccessDecisionRunFacet"


@attr.define
class ProductDatasetFacet(DatasetFacet):
    """Governance metadata of a published product, so lineage consumers see classification and PII."""

    classification: str
    owner: str
    snapshotId: str | None = attr.field(default=None)
    snapshotPath: str | None = attr.field(default=None)
    checksum: str | None = attr.field(default=None)
    piiColumns: dict[str, str] = attr.field(factory=dict)
    scopeColumn: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_BASE + "civicmesh_facets.json#/$defs/ProductDatasetFacet"


@attr.define
class IngestRunFacet(RunFacet):
    """Set by civicmesh on an event it received from another producer (`POST /api/v1/lineage`):
    who submitted it, and that it is external, so it never stands in for what civicmesh recorded."""

    submittedBy: str
    receivedAt: str
    external: bool = attr.field(default=True)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_BASE + "civicmesh_facets.json#/$defs/IngestRunFacet"
