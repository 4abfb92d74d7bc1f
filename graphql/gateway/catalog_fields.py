"""Catalog fields (`products`, `product`, `me`): only what the caller may discover is visible.

A product the caller may not discover is treated exactly like a missing one (absent from lists,
`product(name:)` returns null), so its existence is not revealed.
"""

from __future__ import annotations

import datetime as dt

import anyio.to_thread
import strawberry

from gateway.context import RequestContext
from gateway.errors import bad_input
from gateway.naming import camel
from gateway.types import BigInt, Me, RoleInfo, RowFilterInfo, SnapshotRef
from meshcore.catalog import CatalogEntry, Snapshot
from meshcore.freshness import freshness
from policies.decision import ACTIONS

# Characters of a catalog search: each term is matched against every product's texts on the event
# loop, and 31,000 copies of one letter held it for ~0.35 s (break 11).
MAX_SEARCH = 500


@strawberry.type
class ColumnInfo:
    name: str
    field: str = strawberry.field(description="The GraphQL field name in product rows.")
    type: str
    description: str
    tags: list[str]
    pii: bool
    mask: str | None = strawberry.field(description="Mask kind applied to callers without PII rights.")
    masked: bool = strawberry.field(description="Whether this column is masked for you.")
    deidentified_reason: str | None = strawberry.field(
        description="Derived from personal data, but declared not personal by its owner: why."
    )


@strawberry.type(description="A check of the publish gate that failed (error) or warned.")
class FailedCheck:
    name: str = strawberry.field(description="The dbt test or model, or `pii_gate.<column>`.")
    message: str
    severity: str = strawberry.field(description="`error` held the product back; `warn` did not.")


@strawberry.type(description="The publish gate's latest decision for the product.")
class Quality:
    status: str = strawberry.field(description="passed, warned, failed (held back) or unknown.")
    failed_checks: list[FailedCheck]
    checked_at: dt.datetime | None


def _quality(entry: CatalogEntry) -> Quality:
    record = entry.quality or {}
    checked = record.get("checked_at")
    return Quality(
        status=entry.quality_status,
        failed_checks=[
            FailedCheck(
                name=str(c.get("name")), message=str(c.get("message")), severity=str(c.get("severity"))
            )
            for c in record.get("failed_checks") or ()
        ],
        checked_at=dt.datetime.fromisoformat(checked) if isinstance(checked, str) else None,
    )


@strawberry.type(description="Two clocks: when the data last changed, and when a build last verified it.")
class Freshness:
    last_published_at: dt.datetime | None = strawberry.field(description="Same as lastChangedAt.")
    last_changed_at: dt.datetime | None = strawberry.field(
        description="When the current snapshot was published (its content last changed)."
    )
    last_verified_at: dt.datetime | None = strawberry.field(
        description="When a build last confirmed the current snapshot (also when its data did not change)."
    )
    sla_hours: float | None
    age_hours: float | None = strawberry.field(
        description="Hours since lastVerifiedAt; the SLA runs from it."
    )
    stale: bool | None


@strawberry.type(description="What you may do with a product, and what you could request.")
class Access:
    discover: bool
    read: bool
    read_pii: bool
    export: bool
    lineage: bool
    audit: bool
    grant: bool
    reason: str
    masked_columns: list[str]
    row_filter: RowFilterInfo | None
    can_request: list[str]


@strawberry.type(
    description="How a product's rows are scoped for scoped readers (e.g. a district supervisor): "
    "by `column`, or not at all with the owner's reviewed `unscopedReason` (`meta.civicmesh.unscoped`)."
)
class RowScope:
    column: str | None
    unscoped_reason: str | None


@strawberry.type(description="One snapshot of a product, and whether it may be served.")
class SnapshotInfo:
    id: str
    published_at: dt.datetime
    row_count: BigInt
    current: bool
    status: str = strawberry.field(
        description="`published` (servable), `withdrawn` (by an owner) or `quarantined` (by the "
        "build's PII gate); withdrawn and quarantined snapshots are never served."
    )
    status_reason: str | None = strawberry.field(description="Why it was taken out of service.")
    status_changed_at: dt.datetime | None
    broken: str | None = strawberry.field(
        description="Set while its file fails the checksum stored at publish: what is wrong. "
        "A broken snapshot is not served (`UNAVAILABLE`) until it verifies again."
    )
    broken_at: dt.datetime | None

    @classmethod
    def of(cls, snap: Snapshot, current: bool) -> SnapshotInfo:
        return cls(
            id=snap.id,
            published_at=snap.published_at,
            row_count=snap.row_count,
            current=current,
            status=snap.status,
            status_reason=snap.status_reason,
            status_changed_at=snap.status_at,
            broken=snap.broken,
            broken_at=snap.broken_at,
        )


@strawberry.type(description="Whether a product's servable snapshots still match their checksums.")
class Integrity:
    status: str = strawberry.field(description="`ok`, or `broken` while any servable snapshot is.")
    broken_snapshots: list[SnapshotInfo]


def _ctx(info: strawberry.Info) -> RequestContext:
    return info.context


@strawberry.type
class ProductInfo:
    entry: strawberry.Private[CatalogEntry]

    @strawberry.field
    def name(self) -> str:
        return self.entry.spec.name

    @strawberry.field
    def department(self) -> str:
        return self.entry.spec.department

    @strawberry.field
    def product(self) -> str:
        return self.entry.spec.product

    @strawberry.field(description="Where the rows are: `department.product` as GraphQL fields.")
    def graphql_field(self) -> str:
        return f"{camel(self.entry.spec.department)}.{camel(self.entry.spec.product)}"

    @strawberry.field
    def classification(self) -> str:
        return self.entry.spec.classification

    @strawberry.field
    def owner(self) -> str:
        return self.entry.spec.owner

    @strawberry.field
    def description(self) -> str:
        return self.entry.spec.description

    @strawberry.field
    def tags(self) -> list[str]:
        return list(self.entry.spec.tags)

    @strawberry.field
    def row_scope(self) -> RowScope:
        return RowScope(column=self.entry.spec.scope_column, unscoped_reason=self.entry.spec.unscoped)

    @strawberry.field
    def quality_status(self) -> str:
        return self.entry.quality_status

    @strawberry.field(description="Which checks of the publish gate failed or warned, and when it ran.")
    def quality(self) -> Quality:
        return _quality(self.entry)

    @strawberry.field
    def current_snapshot(self) -> SnapshotRef | None:
        snap = self.entry.current
        if snap is None:
            return None
        return SnapshotRef(id=snap.id, published_at=snap.published_at, row_count=snap.row_count)

    @strawberry.field(
        description="Snapshots, newest first: older servable ones answer `asOf`; withdrawn and "
        "quarantined ones are listed with their reason and are never served."
    )
    async def snapshots(self, info: strawberry.Info) -> list[SnapshotInfo]:
        ctx = _ctx(info)
        ctx.cacheable = False  # old snapshots are removed after their grace period
        snaps = await anyio.to_thread.run_sync(ctx.catalog.snapshots, self.entry.spec.name)
        current = self.entry.current.id if self.entry.current else None
        return [SnapshotInfo.of(s, s.id == current) for s in snaps]

    @strawberry.field(description="Checksum checks of the snapshots that can be served.")
    async def integrity(self, info: strawberry.Info) -> Integrity:
        ctx = _ctx(info)
        broken = await anyio.to_thread.run_sync(ctx.catalog.broken_snapshots, self.entry.spec.name)
        current = self.entry.current.id if self.entry.current else None
        return Integrity(
            status="broken" if broken else "ok",
            broken_snapshots=[SnapshotInfo.of(s, s.id == current) for s in broken],
        )

    @strawberry.field
    def freshness(self, info: strawberry.Info) -> Freshness:
        _ctx(info).cacheable = False  # the age changes with the clock
        state = freshness(self.entry, dt.datetime.now(dt.UTC))  # the one definition of stale
        return Freshness(
            last_published_at=state.last_changed,
            last_changed_at=state.last_changed,
            last_verified_at=state.last_verified,
            sla_hours=self.entry.spec.freshness_sla_hours,
            age_hours=round(state.age.total_seconds() / 3600, 3) if state.age is not None else None,
            stale=None if state.sla is None or state.age is None else state.status == "stale",
        )

    @strawberry.field
    def columns(self, info: strawberry.Info) -> list[ColumnInfo]:
        masks = _ctx(info).decide(self.entry, "read").masks
        return [
            ColumnInfo(
                name=c.name,
                field=camel(c.name),
                type=c.data_type,
                description=c.description,
                tags=list(c.tags),
                pii=c.pii,
                mask=c.mask,
                masked=c.name in masks,
                deidentified_reason=c.deidentified_reason,
            )
            for c in self.entry.spec.columns
        ]

    @strawberry.field
    def my_access(self, info: strawberry.Info) -> Access:
        ctx = _ctx(info)
        decisions = {action: ctx.decide(self.entry, action) for action in ACTIONS}
        read = decisions["read"]
        rf = read.row_filter if read.allowed else None
        return Access(
            discover=decisions["discover"].allowed,
            read=read.allowed,
            read_pii=decisions["read_pii"].allowed,
            export=decisions["export"].allowed,
            lineage=decisions["lineage"].allowed,
            audit=decisions["audit"].allowed,
            grant=decisions["grant"].allowed,
            reason=read.reason,
            masked_columns=sorted(read.masks) if read.allowed else [],
            row_filter=RowFilterInfo(column=rf.column, values=list(rf.values)) if rf else None,
            can_request=[a for a, d in decisions.items() if not d.allowed and a != "discover"],
        )


def _score(entry: CatalogEntry, terms: list[str]) -> int:
    spec = entry.spec
    fields = [
        (8, spec.name.lower()),
        (4, " ".join(spec.tags).lower()),
        (3, spec.description.lower()),
        (2, " ".join(f"{c.name} {' '.join(c.tags)}" for c in spec.columns).lower()),
        (1, " ".join(c.description for c in spec.columns).lower()),
    ]
    score = 0
    for term in terms:
        hit = sum(weight for weight, text in fields if term in text)
        if not hit:
            return 0  # every term must match somewhere
        score += hit
    return score


def visible_entries(ctx: RequestContext) -> list[CatalogEntry]:
    return [e for e in ctx.state.entries.values() if ctx.decide(e, "discover").allowed]


@strawberry.type
class FacetValue:
    value: str
    count: int


@strawberry.type(description="Counts over the products you may discover (for narrowing a search).")
class ProductFacets:
    departments: list[FacetValue]
    classifications: list[FacetValue]
    tags: list[FacetValue]


def _facet(values: list[str]) -> list[FacetValue]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return [FacetValue(value=v, count=c) for v, c in sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))]


def _filter(
    entries: list[CatalogEntry],
    search: str | None,
    department: str | None,
    classification: str | None,
    tag: str | None,
) -> list[CatalogEntry]:
    if department:
        entries = [e for e in entries if e.spec.department == department]
    if classification:
        entries = [e for e in entries if e.spec.classification == classification]
    if tag:
        entries = [e for e in entries if tag in e.spec.tags or any(tag in c.tags for c in e.spec.columns)]
    if search and search.strip():
        if len(search) > MAX_SEARCH:
            raise bad_input(f"`search` has at most {MAX_SEARCH} characters.")
        terms = list(dict.fromkeys(search.lower().split()))  # a term written twice matches once
        scored = [(s, e) for e in entries if (s := _score(e, terms))]
        entries = [e for _, e in sorted(scored, key=lambda se: (-se[0], se[1].spec.name))]
    return entries


@strawberry.type
class CatalogQuery:
    @strawberry.field(description="Products you may discover, optionally searched and filtered.")
    def products(
        self,
        info: strawberry.Info,
        search: str | None = None,
        department: str | None = None,
        classification: str | None = None,
        tag: str | None = None,
    ) -> list[ProductInfo]:
        entries = _filter(visible_entries(_ctx(info)), search, department, classification, tag)
        return [ProductInfo(entry=e) for e in entries]

    @strawberry.field(description="Facet counts for `products` with the same arguments.")
    def product_facets(
        self,
        info: strawberry.Info,
        search: str | None = None,
        department: str | None = None,
        classification: str | None = None,
        tag: str | None = None,
    ) -> ProductFacets:
        entries = _filter(visible_entries(_ctx(info)), search, department, classification, tag)
        return ProductFacets(
            departments=_facet([e.spec.department for e in entries]),
            classifications=_facet([e.spec.classification for e in entries]),
            tags=_facet(
                [t for e in entries for t in {*e.spec.tags, *(t for c in e.spec.columns for t in c.tags)}]
            ),
        )

    @strawberry.field(description="One product by `department.product` name; null if not available to you.")
    def product(self, info: strawberry.Info, name: str) -> ProductInfo | None:
        ctx = _ctx(info)
        entry = ctx.state.entries.get(name)
        if entry is None or not ctx.decide(entry, "discover").allowed:
            return None
        return ProductInfo(entry=entry)

    @strawberry.field(description="Who you are to the gateway.")
    def me(self, info: strawberry.Info) -> Me:
        ctx = _ctx(info)
        user = ctx.policy.user(ctx.subject)
        return Me(
            user=ctx.subject,
            email=getattr(user, "email", None),
            display_name=getattr(user, "display_name", None),
            department=getattr(user, "department", None),
            roles=[RoleInfo(role=r, department=d) for r, d in ctx.policy.roles(ctx.subject)],
        )


__all__ = ["BigInt", "CatalogQuery", "ProductInfo"]
