"""Validation of events against the OpenLineage 2-0-2 event model, as a JSON schema.

openlineage-python 1.54 does not ship the spec's JSON schema files (only the attrs classes generated
from them; their `_schemaURL`s point at openlineage.io, and nothing may be downloaded here). So this
module states the spec's rules for RunEvent and for every standard facet civicmesh emits as a
Draft 2020-12 schema, written from the spec's field tables, and checks `format`s (uuid, date-time,
uri) with a real format checker. The custom facets are checked against the schema civicmesh ships.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
from referencing import Registry, Resource

import lineage.facets

BASE_FACET = {
    "type": "object",
    "required": ["_producer", "_schemaURL"],
    "properties": {
        "_producer": {"type": "string", "format": "uri"},
        "_schemaURL": {"type": "string", "format": "uri"},
        "_deleted": {"type": "boolean"},
    },
}
STRING = {"type": "string"}
UUID = {"type": "string", "format": "uuid"}


def _facet(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [BASE_FACET, {"type": "object", "required": required, "properties": properties}]}


SCHEMA_FIELD: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": STRING,
        "type": STRING,
        "description": STRING,
        "ordinal_position": {"type": "integer", "minimum": 1},
        "fields": {"type": "array", "items": {"$ref": "#/$defs/SchemaField"}},
    },
}
INPUT_FIELD = {
    "type": "object",
    "required": ["namespace", "name", "field"],
    "properties": {
        "namespace": STRING,
        "name": STRING,
        "field": STRING,
        "transformations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["DIRECT", "INDIRECT"]},
                    "subtype": STRING,
                    "description": STRING,
                    "masking": {"type": "boolean"},
                },
            },
        },
    },
}
JOB_REF = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {"namespace": STRING, "name": STRING},
}

KNOWN_FACETS: dict[str, dict[str, Any]] = {
    "parent": _facet(
        ["run", "job"],
        {
            "run": {"type": "object", "required": ["runId"], "properties": {"runId": UUID}},
            "job": JOB_REF,
            "root": {
                "type": "object",
                "required": ["run", "job"],
                "properties": {
                    "run": {"type": "object", "required": ["runId"], "properties": {"runId": UUID}},
                    "job": JOB_REF,
                },
            },
        },
    ),
    "processing_engine": _facet(["version"], {"version": STRING, "name": STRING}),
    "errorMessage": _facet(
        ["message", "programmingLanguage"], {"message": STRING, "programmingLanguage": STRING}
    ),
    "jobType": _facet(
        ["processingType", "integration"],
        {"processingType": {"enum": ["BATCH", "STREAMING"]}, "integration": STRING, "jobType": STRING},
    ),
    "sql": _facet(["query"], {"query": STRING, "dialect": STRING}),
    "schema": _facet([], {"fields": {"type": "array", "items": {"$ref": "#/$defs/SchemaField"}}}),
    "version": _facet(["datasetVersion"], {"datasetVersion": STRING}),
    "documentation": _facet(["description"], {"description": STRING}),
    "ownership": _facet(
        [],
        {
            "owners": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": STRING, "type": STRING},
                },
            }
        },
    ),
    "tags": _facet(
        [],
        {
            "tags": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "value"],
                    "properties": {"key": STRING, "value": STRING, "source": STRING, "field": STRING},
                },
            }
        },
    ),
    "outputStatistics": _facet(
        [], {"rowCount": {"type": "integer", "minimum": 0}, "size": {"type": "integer", "minimum": 0}}
    ),
    "columnLineage": _facet(
        ["fields"],
        {
            "fields": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["inputFields"],
                    "properties": {
                        "inputFields": {"type": "array", "items": INPUT_FIELD},
                        "transformationDescription": STRING,
                        "transformationType": STRING,
                    },
                },
            },
            "dataset": {"type": "array", "items": INPUT_FIELD},
        },
    ),
    "dataQualityAssertions": _facet(
        ["assertions"],
        {
            "assertions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["assertion", "success"],
                    "properties": {"assertion": STRING, "success": {"type": "boolean"}, "column": STRING},
                },
            }
        },
    ),
    "civicmesh_access": {
        "$ref": "https://civicmesh.invalid/lineage/civicmesh_facets.json#/$defs/AccessDecisionRunFacet"
    },
    "civicmesh_product": {
        "$ref": "https://civicmesh.invalid/lineage/civicmesh_facets.json#/$defs/ProductDatasetFacet"
    },
}


def _facets() -> dict[str, Any]:
    # Unknown facet names are allowed by the spec (custom facets) but must still be facets.
    return {"type": "object", "properties": KNOWN_FACETS, "additionalProperties": BASE_FACET}


DATASET = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {"namespace": STRING, "name": STRING, "facets": _facets()},
}

RUN_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {"SchemaField": SCHEMA_FIELD},
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "format": "uri"},
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {"runId": UUID, "facets": _facets()},
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {"namespace": STRING, "name": STRING, "facets": _facets()},
        },
        "inputs": {
            "type": "array",
            "items": {"allOf": [DATASET, {"properties": {"inputFacets": _facets()}}]},
        },
        "outputs": {
            "type": "array",
            "items": {"allOf": [DATASET, {"properties": {"outputFacets": _facets()}}]},
        },
    },
}

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value and parsed.tzinfo is not None


@FORMATS.checks("uri", raises=ValueError)
def _uri(value: object) -> bool:
    return not isinstance(value, str) or bool(urlparse(value).scheme)


def _registry() -> Registry:
    path = Path(lineage.facets.__file__).parent / "civicmesh_facets.json"
    custom = json.loads(path.read_text())
    return Registry().with_resource(custom["$id"], Resource.from_contents(custom))


VALIDATOR = jsonschema.Draft202012Validator(RUN_EVENT_SCHEMA, format_checker=FORMATS, registry=_registry())


def validate(event: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(event), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError(
            "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])
        )
