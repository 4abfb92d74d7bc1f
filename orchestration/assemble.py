"""Assembles the code location's Definitions from the per-stage pieces (ingest, dbt, publish,
freshness, automation). `orchestration.definitions` holds the one instance Dagster loads."""

from __future__ import annotations

import json

import dagster as dg

from meshcore.products import load_product_specs
from meshcore.settings import Settings
from orchestration.automation import all_products_job, daily_build, new_landing_files
from orchestration.buildlock import locked_in_process_executor
from orchestration.freshness import freshness_checks, freshness_job, hourly_freshness
from orchestration.ingest import ingest_assets
from orchestration.project import dbt_project, dbt_resource, ensure_manifest
from orchestration.publish import publish_assets
from orchestration.resources import MeshResource
from orchestration.transform import MeshTranslator, dbt_transform_assets


def build_definitions(
    settings: Settings | None = None, loggers: dict[str, dg.LoggerDefinition] | None = None
) -> dg.Definitions:
    settings = settings or Settings.from_env()
    project = dbt_project(settings)
    manifest = json.loads(ensure_manifest(project).read_text())
    translator = MeshTranslator()
    specs = load_product_specs(manifest)
    check_freshness = freshness_job(specs)
    return dg.Definitions(
        assets=[
            *ingest_assets(manifest, translator),
            dbt_transform_assets(project, translator),
            *publish_assets(manifest, translator, specs),
        ],
        asset_checks=freshness_checks(specs),
        jobs=[all_products_job, check_freshness],
        schedules=[daily_build(settings), hourly_freshness(check_freshness, settings)],
        sensors=[new_landing_files(settings)],
        loggers=loggers,
        # Runs Dagster launches hold the home's build lock, as `civicmesh build` does.
        executor=locked_in_process_executor(settings.home),
        resources={
            "dbt": dbt_resource(project),
            "mesh": MeshResource(home=str(settings.home), metadata_url=settings.metadata_url),
        },
    )
