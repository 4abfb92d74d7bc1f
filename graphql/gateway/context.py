"""Per-request state: who is asking, what they touched (for the access log) and what was governed
(for `extensions.governance`). Resolvers add to it; the endpoint turns it into log records."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starlette.responses import Response

from gateway.auth import Principal
from gateway.duck import DuckPool
from lineage.recorder import LineageRecorder
from meshcore.accesslog import AccessLog, AccessRecord
from meshcore.catalog import Catalog, CatalogEntry
from meshcore.products import ProductSpec
from meshcore.settings import Settings
from policies.decision import Decision, RowFilter

if TYPE_CHECKING:
    from policies.engine import PolicyEngine


@dataclass
class Touch:
    """One governed use of one product within a request (becomes one access-log record)."""

    product: str | None
    action: str
    decision: Decision | None
    spec: ProductSpec | None = None  # for the lineage read event
    snapshot_id: str | None = None
    columns_requested: list[str] = field(default_factory=list)
    columns_returned: list[str] = field(default_factory=list)
    masks: dict[str, str] = field(default_factory=dict)
    row_filter: RowFilter | None = None
    rows: int | None = None
    error_code: str | None = None


@dataclass
class CatalogState:
    """The catalog as of one `Catalog.version()`: read once per publish, not once per request."""

    version: tuple[int, str]
    entries: dict[str, CatalogEntry]


class Recording(Protocol):
    """How a handler records its request (`recording.Recorder` is the one; typed here so that
    module, which reads contexts, is not imported by this one)."""

    lineage: LineageRecorder

    async def finish_export(
        self, ctx: RequestContext, touch: Touch, status: int, fmt: str, error: str | None
    ) -> Response | None: ...

    async def commit(
        self,
        records: list[AccessRecord],
        events: list[Any] | Callable[[], list[Any]] | None = None,
        ctx: RequestContext | None = None,
        outbox_rows: list[dict[str, Any]] | None = None,
    ) -> bool: ...


@dataclass
class RequestContext:
    """One authenticated request (GraphQL, export or lineage ingest), built by the request pipeline
    (`pipeline.RequestPipeline`) and found in the ASGI scope (`pipeline.request_context`)."""

    settings: Settings
    principal: Principal
    policy: PolicyEngine
    duck: DuckPool
    catalog: Catalog
    access_log: AccessLog
    state: CatalogState
    request_id: str
    client: str | None
    lineage_graph: Any = None  # lineage_fields.GraphCache
    started: float = field(default_factory=time.perf_counter)
    touches: list[Touch] = field(default_factory=list)
    error_codes: list[str] = field(default_factory=list)
    cacheable: bool = True  # False once a field's value depends on the clock (e.g. freshness age)
    governance: dict[str, dict[str, Any]] = field(default_factory=dict)
    recorder: Recording | None = None
    schema: Any = None  # the schema.GatewaySchema of `state` (exports coerce arguments with it)
    # Request-wide access-log fields (request_id, client, subject, roles, ...), shared by its records.
    log_fields: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False  # set once a record of this request was written (never write two)
    payload: Any = None  # the JSON body, parsed by the pipeline after its checks (None: no body)
    body: bytes = b""

    @property
    def subject(self) -> str:
        return self.principal.subject

    def decide(self, entry: CatalogEntry, action: str) -> Decision:
        return self.policy.decide(self.subject, entry.spec, action)

    def roles(self) -> list[str]:
        return [f"{role}@{department}" for role, department in self.policy.roles(self.subject)]

    def touch(self, touch: Touch) -> None:
        self.touches.append(touch)
        if touch.product is None or touch.snapshot_id is None or touch.error_code is not None:
            return
        entry = self.governance.setdefault(touch.product, {"snapshotIds": []})
        if touch.snapshot_id not in entry["snapshotIds"]:
            entry["snapshotIds"].append(touch.snapshot_id)
        entry["snapshotId"] = touch.snapshot_id
        entry["maskedColumns"] = dict(sorted(touch.masks.items()))
        entry["rowFilter"] = touch.row_filter.as_dict() if touch.row_filter else None
        if touch.decision is not None:
            entry["rule"] = touch.decision.rule
            entry["policyVersion"] = touch.decision.policy_version


def touch_record(common: dict[str, Any], touch: Touch, request_error: str | None) -> AccessRecord:
    """An access-log record for one touch; `common` holds the request-wide fields."""
    decision = touch.decision
    return AccessRecord(
        **common,
        action=touch.action,
        product=touch.product,
        snapshot_id=touch.snapshot_id,
        columns_requested=touch.columns_requested,
        columns_returned=touch.columns_returned,
        columns_masked=touch.masks,
        row_filter=touch.row_filter.as_dict() if touch.row_filter else None,
        decision="none" if decision is None else ("allow" if decision.allowed else "deny"),
        rule=decision.rule if decision else None,
        reason=decision.reason if decision else "",
        policy_version=decision.policy_version if decision else None,
        rows=touch.rows,
        error_code=touch.error_code or request_error,
    )
