"""When the mesh rebuilds: a daily schedule, and a sensor for new landing files.

Both, and the hourly freshness schedule, start STOPPED unless `CIVICMESH_AUTOMATION=on`
(`Settings.automation_on`): a Dagster UI started to look at runs must not start builds by itself.
Dagster's UI (Automation, per schedule or sensor) switches each one; a state switched there is kept
in the instance and wins over this default.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from meshcore.settings import Settings

all_products_job = dg.define_asset_job(
    "build_all_products",
    selection=dg.AssetSelection.all(),
    description="Ingest every landing file, run dbt build (tests gate), publish passing products.",
    # Transient failures (a locked file, a full disk that was cleared) get two more tries.
    tags={"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"},
)


def schedule_status(settings: Settings) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if settings.automation_on else dg.DefaultScheduleStatus.STOPPED


def daily_build(settings: Settings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        job=all_products_job,
        cron_schedule="0 5 * * *",
        execution_timezone="Europe/Berlin",
        default_status=schedule_status(settings),
    )


def _landing_state(landing_dir: Path) -> dict[str, float]:
    return {
        str(p.relative_to(landing_dir)): p.stat().st_mtime for p in sorted(landing_dir.glob("*/*.parquet"))
    }


def landing_changes(
    context: dg.SensorEvaluationContext, landing_dir: Path
) -> dg.SensorResult | dg.SkipReason:
    """A run request when a landing file is new, changed or removed since the sensor's cursor.

    The run key names the whole landing state (a digest of every file's name and mtime): Dagster
    skips a run request whose key it has seen, so a key from the newest mtime alone lost a change
    to an older file, such as one delivered with its original time kept (`cp -p`, `rsync -t`)."""
    state = _landing_state(landing_dir) if landing_dir.exists() else {}
    previous = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(k for k in state.keys() | previous.keys() if previous.get(k) != state.get(k))
    if not changed or not state:
        return dg.SkipReason("no new landing files" if state else "no landing files")
    digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"landing-{digest}", tags={"changed": ",".join(changed)[:200]})],
        cursor=json.dumps(state),
    )


def new_landing_files(settings: Settings) -> dg.SensorDefinition:
    status = dg.DefaultSensorStatus.RUNNING if settings.automation_on else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name="new_landing_files", job=all_products_job, minimum_interval_seconds=60, default_status=status
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        """Rebuild when a department delivers a new or changed landing file."""
        return landing_changes(context, settings.landing_dir)

    return _sensor
