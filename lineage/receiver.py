"""Accepting OpenLineage events from other producers in the city (`POST /api/v1/lineage`).

The HTTP route, its authentication and body-size limit belong to the gateway; this module is the
part that does not depend on a web framework: check that a body is one OpenLineage RunEvent a
lineage graph can use, then store it in the outbox like civicmesh's own events (so it is durable,
forwarded to the configured backends and visible in `civicmesh lineage show`).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from lineage.recorder import LineageRecorder

MAX_EVENT_BYTES = 1 << 20  # 1 MiB: generous for one event with column lineage, bounded for a server
EVENT_TYPES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}


class InvalidEvent(ValueError):
    """The body is not an acceptable RunEvent; the message is safe to return to the sender (HTTP 400)."""


def _text(value: Any, where: str, limit: int = 1000) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidEvent(f"{where} must be a non-empty string of at most {limit} characters")
    return value


def _datasets(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > 1000:
        raise InvalidEvent(f"{where} must be a list of at most 1000 datasets")
    for index, dataset in enumerate(value):
        if not isinstance(dataset, dict):
            raise InvalidEvent(f"{where}[{index}] must be an object")
        _text(dataset.get("namespace"), f"{where}[{index}].namespace")
        _text(dataset.get("name"), f"{where}[{index}].name")


def parse_event(body: bytes | str) -> dict[str, Any]:
    """Decode and check one RunEvent (the envelope fields the spec requires and the graph relies on)."""
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("body must be one JSON object (a RunEvent)")
    if "run" not in event or "job" not in event:
        raise InvalidEvent("only RunEvents are accepted (run and job are required)")
    event_time = _text(event.get("eventTime"), "eventTime", 64)
    try:
        parsed = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent("eventTime must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise InvalidEvent("eventTime must carry a time zone")
    _text(event.get("producer"), "producer")
    _text(event.get("schemaURL"), "schemaURL")
    event_type = event.get("eventType")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise InvalidEvent(f"eventType must be one of {sorted(EVENT_TYPES)}")
    run, job = event["run"], event["job"]
    if not isinstance(run, dict) or not isinstance(job, dict):
        raise InvalidEvent("run and job must be objects")
    try:
        uuid.UUID(str(run.get("runId")))
    except ValueError:
        raise InvalidEvent("run.runId must be a UUID") from None
    _text(job.get("namespace"), "job.namespace")
    _text(job.get("name"), "job.name")
    _datasets(event.get("inputs"), "inputs")
    _datasets(event.get("outputs"), "outputs")
    return event


def accept(recorder: LineageRecorder, body: bytes | str) -> str:
    """Validate and durably store one external event; returns its outbox uid (for the 201 response)."""
    (uid,) = recorder.record([parse_event(body)])
    return uid
