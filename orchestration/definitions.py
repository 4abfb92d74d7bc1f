"""The one Definitions of the civicmesh code location, assembled from the per-stage pieces.

Load with `dagster dev -m orchestration.definitions` (DAGSTER_HOME from the Makefile).
"""

from __future__ import annotations

import json

import dagster as dg

from civicmesh.products import load_product_specs
from civicmesh.settings import Settings
from orchestration.automation import all_products_job, daily_build, new_landing_files
from orchestration.ingest import ingest_assets
from orchestration.project import dbt_project, dbt_resource, ensure_manifest
from orchestration.publish import publish_assets
from orchestration.resources import MeshResource
from orchestration.transform import MeshTranslator, dbt_transform_assets


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    project = dbt_project(settings)
    manifest = json.loads(ensure_manifest(project).read_text())
    translator = MeshTranslator()
    specs = load_product_specs(manifest)
    return dg.Definitions(
        assets=[
            *ingest_assets(manifest, translator),
            dbt_transform_assets(project, translator),
            *publish_assets(manifest, translator, specs),
        ],
        jobs=[all_products_job],
        schedules=[daily_build],
        sensors=[new_landing_files],
        resources={
            "dbt": dbt_resource(project),
            "mesh": MeshResource(home=str(settings.home), metadata_url=settings.metadata_url),
        },
    )


defs = build_definitions()
