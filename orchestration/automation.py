"""When the mesh rebuilds: a daily schedule, and a sensor for new landing files."""

import json
from pathlib import Path

import dagster as dg

from civicmesh.settings import Settings

all_products_job = dg.define_asset_job(
    "build_all_products",
    selection=dg.AssetSelection.all(),
    description="Ingest every landing file, run dbt build (tests gate), publish passing products.",
    # Transient failures (a locked file, a full disk that was cleared) get two more tries.
    tags={"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"},
)

daily_build = dg.ScheduleDefinition(
    job=all_products_job, cron_schedule="0 5 * * *", execution_timezone="Europe/Berlin"
)


def _landing_state(landing_dir: Path) -> dict[str, float]:
    return {
        str(p.relative_to(landing_dir)): p.stat().st_mtime for p in sorted(landing_dir.glob("*/*.parquet"))
    }


@dg.sensor(job=all_products_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def new_landing_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Rebuild when a department delivers a new or changed landing file."""
    landing_dir = Settings.from_env().landing_dir
    state = _landing_state(landing_dir) if landing_dir.exists() else {}
    previous = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(k for k, v in state.items() if previous.get(k) != v)
    if not changed:
        return dg.SkipReason("no new landing files")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"landing-{max(state.values())}", tags={"changed": ",".join(changed)[:200]})
        ],
        cursor=json.dumps(state),
    )
