"""Accepting OpenLineage events from other producers in the city (`POST /api/v1/lineage`).

Lineage ingest is a privilege: the gateway lets through only a caller holding `produce_lineage` on
the event's job namespace (a policy line), with the body bounded in size and nesting before it was
parsed. This module holds the rules any external event must keep, whoever sends it, and does not
depend on a web framework:

- it is one RunEvent a lineage graph can use (envelope fields and sizes: `check_event`), its
  names without control or format characters and its namespaces printable ASCII (no look-alikes);
- it writes nowhere civicmesh owns (`protect`, namespaces compared as URIs, case-insensitively):
  not civicmesh's job namespace (`civicmesh`), no output that is a civicmesh product
  (`civicmesh://...`) or a dataset a civicmesh job writes (the gateway's graph answers `owned`);
  a governed product's lineage is what civicmesh recorded;
- it carries no `civicmesh_*` facet: those state access decisions, subjects and classifications;
- it is stored marked external with its submitter (`civicmesh_ingest` run facet, `mark`), so the
  graph never lets it stand in for an edge civicmesh recorded (`lineage.graph`).
"""

from __future__ import annotations

import copy
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from lineage.naming import INGEST_FACET, JOB_NAMESPACE, PRODUCER, RESERVED_PREFIX, stable_namespace

MAX_EVENT_BYTES = 1 << 20  # 1 MiB: generous for one event with column lineage, bounded for a server
MAX_EVENT_TIME = 40  # characters: the outbox's event_time column (PostgreSQL refuses longer ones)
EVENT_TYPES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
PRODUCT_SCHEME = "civicmesh:"  # product datasets: civicmesh://<site>/<department>.<product>

Owned = Callable[[str, str], bool]  # (dataset namespace, name) -> written by a civicmesh job
# Unicode categories no name needs: controls, format characters (zero-width, bidi), separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class InvalidEvent(ValueError):
    """The body is not an acceptable RunEvent; the message is safe to return to the sender (HTTP 400)."""


class ForbiddenEvent(InvalidEvent):
    """A well-formed event that writes where no external producer may (HTTP 403)."""


def _text(value: Any, where: str, limit: int = 1000) -> str:
    """A non-empty string of at most `limit` characters with no control or format characters (a
    zero-width space or a bidi override would make one name look like another)."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidEvent(f"{where} must be a non-empty string of at most {limit} characters")
    if any(unicodedata.category(ch) in _INVISIBLE for ch in value):
        raise InvalidEvent(f"{where} must not hold control or format characters")
    return value


def _namespace(value: Any, where: str, limit: int = 200) -> str:
    """A namespace (OpenLineage: a URI or a name): printable ASCII without spaces, so no namespace
    can look like another one it is not (a Cyrillic `i`, U+0456, in `civicmesh`; a trailing space)."""
    _text(value, where, limit)
    if not value.isascii() or not value.isprintable() or " " in value:
        raise InvalidEvent(f"{where} must be printable ASCII without spaces")
    return value


def normal_namespace(namespace: str) -> str:
    """`namespace` compared as a URI is (RFC 3986 §6.2.2.1: scheme and host are case-insensitive),
    legacy warehouse paths as today's (`naming.stable_namespace`): `DUCKDB://LOCAL` is `duckdb://local`."""
    scheme, sep, rest = namespace.partition("://")
    if not sep:
        return namespace.casefold()
    authority, slash, path = rest.partition("/")
    return stable_namespace(f"{scheme.casefold()}://{authority.casefold()}{slash}{path}")


def _datasets(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > 1000:
        raise InvalidEvent(f"{where} must be a list of at most 1000 datasets")
    for index, dataset in enumerate(value):
        if not isinstance(dataset, dict):
            raise InvalidEvent(f"{where}[{index}] must be an object")
        _namespace(dataset.get("namespace"), f"{where}[{index}].namespace")
        _text(dataset.get("name"), f"{where}[{index}].name")


def check_event(event: Any) -> dict[str, Any]:
    """Check one decoded RunEvent: the envelope fields the spec requires and the graph relies on."""
    if not isinstance(event, dict):
        raise InvalidEvent("body must be one JSON object (a RunEvent)")
    if "run" not in event or "job" not in event:
        raise InvalidEvent("only RunEvents are accepted (run and job are required)")
    event_time = _text(event.get("eventTime"), "eventTime", MAX_EVENT_TIME)
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
        uuid.UUID(run.get("runId"))  # a string: a JSON number of 32 digits is no UUID
    except (TypeError, ValueError, AttributeError):
        raise InvalidEvent("run.runId must be a UUID (a string)") from None
    _namespace(job.get("namespace"), "job.namespace")
    _text(job.get("name"), "job.name", 500)
    for where in ("run", "job"):
        if not isinstance(event[where].get("facets") or {}, dict):
            raise InvalidEvent(f"{where}.facets must be an object")
    _datasets(event.get("inputs"), "inputs")
    _datasets(event.get("outputs"), "outputs")
    return event


def _facet_maps(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield "run.facets", event["run"].get("facets")
    yield "job.facets", event["job"].get("facets")
    for side in ("inputs", "outputs"):
        for index, dataset in enumerate(event.get(side) or ()):
            for key in ("facets", "inputFacets", "outputFacets"):
                yield f"{side}[{index}].{key}", dataset.get(key)


def protect(event: dict[str, Any], owned: Owned) -> None:
    """Refuse (ForbiddenEvent) an event that would write where only civicmesh writes. Namespaces
    and facet names are compared case-insensitively (`Civicmesh` is civicmesh's namespace too)."""
    job_namespace = normal_namespace(event["job"]["namespace"])
    if job_namespace == JOB_NAMESPACE or job_namespace.startswith(PRODUCT_SCHEME):
        raise ForbiddenEvent(f"job namespace {JOB_NAMESPACE!r} is civicmesh's own; use your own namespace")
    for index, dataset in enumerate(event.get("outputs") or ()):
        namespace, name = normal_namespace(dataset["namespace"]), dataset["name"]
        if namespace.startswith(PRODUCT_SCHEME) or owned(namespace, name):
            raise ForbiddenEvent(
                f"outputs[{index}] is written by civicmesh; an external event may not state its lineage"
            )
    for where, facets in _facet_maps(event):
        if isinstance(facets, dict) and any(str(k).casefold().startswith(RESERVED_PREFIX) for k in facets):
            raise ForbiddenEvent(f"{where}: facets named {RESERVED_PREFIX}* are civicmesh's own")


def mark(event: dict[str, Any], submitter: str, now: datetime | None = None) -> dict[str, Any]:
    """A copy of `event` carrying the `civicmesh_ingest` run facet: submitter, time, external."""
    from lineage.facets import IngestRunFacet  # openlineage-python: only when an event comes in
    from lineage.runs import plain

    received = (now or datetime.now(UTC)).isoformat()
    facet = IngestRunFacet(submittedBy=submitter, receivedAt=received, external=True, producer=PRODUCER)
    marked = copy.deepcopy(event)
    facets = dict(marked["run"].get("facets") or {})
    facets[INGEST_FACET] = plain(facet)
    marked["run"]["facets"] = facets
    return marked


def is_external(event: dict[str, Any]) -> bool:
    """True for an event civicmesh received rather than recorded (see `mark`)."""
    facets = (event.get("run") or {}).get("facets") or {}
    return isinstance(facets, dict) and bool((facets.get(INGEST_FACET) or {}).get("external"))


def accept(event: Any, submitter: str, owned: Owned) -> dict[str, Any]:
    """The checked, protected and marked event, ready for the outbox; raises InvalidEvent
    (ForbiddenEvent when it writes where civicmesh writes)."""
    checked = check_event(event)
    protect(checked, owned)
    return mark(checked, submitter)
