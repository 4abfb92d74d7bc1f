"""`civicmesh build`: materialise every asset in-process, with a short progress report.

In-process execution avoids the 20-35 s of subprocess and queue overhead of a default Dagster run
(ARCHITECTURE §2b); the run still lands in the Dagster instance, so it shows in the UI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from lineage.recorder import LineageRecorder
from meshcore.catalog import Catalog
from meshcore.settings import Settings, chosen_dagster_home
from meshcore.store import get_engine
from orchestration.buildlock import build_lock, recover_dead_build
from orchestration.publish import PUBLISH_PREFIX

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME under the data folder, configured by the repository's dagster.yaml.

    A DAGSTER_HOME the user chose keeps its own configuration; the managed one follows the repo."""
    chosen = chosen_dagster_home()
    home = chosen or settings.home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() or (not chosen and target.read_bytes() != DAGSTER_YAML.read_bytes()):
        shutil.copyfile(DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class ProjectError(RuntimeError):
    """dbt could not parse the project (a missing ref, a Jinja error, invalid yml): nothing was
    built. The message is dbt's own, naming the file."""


def _dbt_parse_error(exc: Exception) -> ProjectError:
    """dagster-dbt wraps a failed `dbt parse` with a pointer to its log; keep dbt's own errors."""
    text = str(exc)
    marker = "Errors parsed from dbt logs:"
    errors = text.split(marker, 1)[1].strip() if marker in text else text.strip()
    errors = errors.removeprefix("Encountered an error:").strip()
    return ProjectError(f"dbt could not parse the project:\n{errors}")


@dataclass(frozen=True)
class ProductOutcome:
    """What one build did with one product: published (possibly with warnings) or held back."""

    product: str
    published: bool
    snapshot_id: str | None = None
    reasons: tuple[str, ...] = ()  # held back: why (a failed check, a failed step); published: warnings

    @property
    def outcome(self) -> str:
        return ("warned" if self.reasons else "published") if self.published else "held back"


@dataclass
class BuildReport:
    run_id: str = ""
    success: bool = False  # Dagster's view: no step failed (a held-back product is a failed step)
    materialized: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    products: list[ProductOutcome] = field(default_factory=list)
    seconds: float = 0.0
    log_path: Path | None = None

    @property
    def held_back(self) -> list[ProductOutcome]:
        return [p for p in self.products if not p.published]

    @property
    def other_failures(self) -> list[str]:
        """Failed steps that are not a product's publish step (ingest, the dbt step itself): a
        corrupt landing file under a selection without products holds nothing back, yet failed."""
        return [s for s in self.failed_steps if not s.startswith(f"{PUBLISH_PREFIX}__")]

    @property
    def failed(self) -> bool:
        """Something was held back or a step failed: `civicmesh build` exits 1. Warnings alone never."""
        return bool(self.held_back or self.other_failures)

    def summary(self) -> list[str]:
        """The build summary: a headline, then one line per product (published / warned / held
        back) with the reasons indented below it, then the failed steps no product line shows."""
        warned = [p for p in self.products if p.outcome == "warned"]
        published = [p for p in self.products if p.published]
        verdict = "FAILED" if self.failed else "succeeded"
        lines = [
            f"build {verdict} in {self.seconds:.1f}s (run {self.run_id}): {len(published)} of "
            f"{len(self.products)} products published, {len(self.held_back)} held back, {len(warned)} warned"
        ]
        width = max((len(p.product) for p in self.products), default=0)
        order = {"held back": 0, "warned": 1, "published": 2}
        for product in sorted(self.products, key=lambda p: (order[p.outcome], p.product)):
            snapshot = f"  snapshot {product.snapshot_id}" if product.snapshot_id else ""
            lines.append(f"  {product.outcome:<9}  {product.product:<{width}}{snapshot}".rstrip())
            for reason in product.reasons:
                first, *rest = reason.splitlines() or [""]
                lines.append(f"      - {first}")
                lines += [f"        {line}" for line in rest]
        lines += [f"  failed step: {step}" for step in self.other_failures]
        return lines


def _check_lines(check: dict) -> str:
    detail = str(check.get("detail") or "").strip()
    return str(check.get("message") or check.get("name")) + (f"\n{detail}" if detail else "")


def product_outcomes(
    catalog: Catalog, products: list[str], run_id: str, published: dict[str, str], failed: dict[str, str]
) -> list[ProductOutcome]:
    """One outcome per product of the build, from the gate's quality record of run `run_id`,
    `published` ({product: snapshot id}) and `failed` ({product: its publish step's error})."""
    outcomes = []
    for name in products:
        entry = catalog.entry(name)
        quality = entry.quality if entry and (entry.quality or {}).get("run_id") == run_id else None
        checks = (quality or {}).get("failed_checks") or []
        if name in published:
            warnings = tuple(_check_lines(c) for c in checks if c.get("severity") == "warn")
            outcomes.append(ProductOutcome(name, True, published[name], warnings))
            continue
        reasons = [_check_lines(c) for c in checks if c.get("severity") != "warn"]
        if not reasons:
            reasons = [
                failed.get(name) or "not built: an upstream step failed or was skipped (see failed steps)"
            ]
        outcomes.append(ProductOutcome(name, False, reasons=tuple(reasons)))
    return outcomes


class _ProgressHandler(logging.Handler):
    """Turns Dagster step and check events into one line each."""

    def __init__(self, emit_line: Callable[[str], None], started: float) -> None:
        super().__init__()
        self.emit_line = emit_line
        self.started = started

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is None:
            return
        elapsed = f"[{time.monotonic() - self.started:6.1f}s]"
        kind = event.event_type_value
        if kind == "ASSET_MATERIALIZATION":
            self.emit_line(f"{elapsed} materialized {event.asset_key.to_user_string()}")
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not data.passed:
                self.emit_line(f"{elapsed} CHECK FAILED {data.asset_key.to_user_string()}: {data.check_name}")
        elif kind == "STEP_FAILURE":
            self.emit_line(f"{elapsed} step failed: {event.step_key}")
        elif kind == "STEP_SKIPPED":
            self.emit_line(f"{elapsed} skipped {event.step_key} (upstream check or step failed)")


def _progress_logger(emit_line: Callable[[str], None], started: float) -> dg.LoggerDefinition:
    @dg.logger
    def progress(_init_context: dg.InitLoggerContext) -> logging.Logger:
        log = logging.Logger("civicmesh.build", level=logging.DEBUG)
        log.addHandler(_ProgressHandler(emit_line, started))
        return log

    return progress


def _collect(
    report: BuildReport, events: Sequence[Any], products: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Fill `report` from the run's events; returns ({product: snapshot id published},
    {product: its publish step's error}). `products`: {publish step key: product name}."""
    published: dict[str, str] = {}
    publish_failed: dict[str, str] = {}
    for event in events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            report.materialized.append(event.asset_key.to_user_string())
            if event.step_key in products:
                metadata = event.event_specific_data.materialization.metadata
                published[products[event.step_key]] = str(metadata["snapshot_id"].value)
        elif event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            data = event.event_specific_data
            report.failed_checks.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
        elif event.event_type_value == "STEP_SKIPPED":
            report.skipped.append(event.step_key)
        elif event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            while error is not None and error.cause is not None:  # the user code's own error
                error = error.cause
            message = error.message.strip() if error else "failed"
            report.failed_steps.append(f"{event.step_key}: {message}")
            if event.step_key in products:
                publish_failed[products[event.step_key]] = message
    return published, publish_failed


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """Give SIGTERM back its handler once an in-process Dagster run ends.

    Dagster maps SIGTERM to SIGINT's handler as its run ends (`dagster._utils.interrupts`). A
    process started in the background by a shell (`make demo &`, nohup, cron) ignores SIGINT, so
    SIGTERM ended up ignored too: `kill` no longer stopped it, and every child it started from
    then on inherited the ignored signal. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


def run_build(
    settings: Settings,
    selection: str | None = None,
    emit_line: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    wait: bool = True,
) -> BuildReport:
    """Materialise all (or `selection`) assets in-process and return what happened.

    One build per home at a time (orchestration.buildlock): waits for a running build, or raises
    `BuildLocked` when `wait` is False; first recovers from a build that died holding the lock."""
    ensure_dagster_home(settings)
    run_id = str(uuid.uuid4())  # a Dagster run id, known before the run so the lock can name it
    with build_lock(settings.home, run_id, wait, emit_line) as dead:
        if dead is not None:
            with dg.DagsterInstance.get() as instance:
                recover_dead_build(dead, emit_line, instance)
        return _run_locked(settings, selection, emit_line, run_id)


def _run_locked(
    settings: Settings, selection: str | None, emit_line: Callable[[str], None], run_id: str
) -> BuildReport:
    from orchestration.assemble import build_definitions  # parses dbt; keep CLI start-up light

    started = time.monotonic()
    emit_line("[   0.0s] parsing dbt project and loading definitions")
    from dagster_dbt.errors import DagsterDbtError

    try:
        defs = build_definitions(settings, loggers={"progress": _progress_logger(emit_line, started)})
    except DagsterDbtError as exc:
        raise _dbt_parse_error(exc) from exc
    job = defs.resolve_implicit_global_asset_job_def()
    report = BuildReport()
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    report.log_path = log_dir / f"build-{time.strftime('%Y%m%dT%H%M%S')}.log"
    emit_line(f"[{time.monotonic() - started:6.1f}s] running; dbt output goes to {report.log_path}")
    # dagster-dbt echoes every dbt line to stdout; keep it in the log file, show progress lines.
    with (
        report.log_path.open("w") as log_file,
        contextlib.redirect_stdout(log_file),
        dg.DagsterInstance.get() as instance,
        sigterm_kept(),
    ):
        graph = defs.resolve_asset_graph()
        job_keys = (
            dg.AssetSelection.from_coercible(selection).resolve(graph)
            if selection
            else graph.get_all_asset_keys()
        )
        asset_selection = list(job_keys) if selection else None
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            asset_selection=asset_selection,
            run_config={"loggers": {"progress": {}}},
            tags={"civicmesh/trigger": "cli"},
            run_id=run_id,
        )
    report.run_id = result.run_id
    report.success = result.success
    products = {
        k.to_python_identifier(): ".".join(k.path[1:]) for k in job_keys if k.path[0] == PUBLISH_PREFIX
    }
    published, publish_failed = _collect(report, result.all_events, products)
    # Deliver this run's lineage now; a backend that is down keeps them in the outbox.
    recorder = LineageRecorder.shared(settings)
    delivered = recorder.flush(timeout=settings.lineage_flush_timeout_s)
    recorder.stop()  # releases the delivery lease so the next process need not wait for it to expire
    if not delivered:
        emit_line("lineage: a transport is unreachable; events stay in the outbox for the next delivery")
    catalog = Catalog(get_engine(settings.metadata_url), settings.home)
    report.products = product_outcomes(
        catalog, sorted(products.values()), result.run_id, published, publish_failed
    )
    report.seconds = time.monotonic() - started
    return report
