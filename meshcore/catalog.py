"""The catalog of published products and their immutable snapshots.

Publishing registers a snapshot and moves the product's current pointer in one transaction; a
failed quality gate only records the status and leaves the pointer where it was. Snapshot paths
are stored relative to the home (ARCHITECTURE §2), so a home can be moved, backed up and restored.

A snapshot can be taken out of service for good: *withdrawn* by an owner, or *quarantined* by the
build when its PII gate finds a leak in it (`Catalog.withdraw`). An out-of-service snapshot is never
served again (not current, not `asOf`, not through a cursor) and is never re-published with the
same content and spec; the change and who made it are chained in the access log in the same
transaction.

A product can be *retired* by an owner (`Catalog.withdraw` with kind "retired" on its current
snapshot): nothing is current any more, the product leaves discovery (`entries()` omits it, so the
gateway's catalog and per-caller schema drop it) and is never published again under that name, while
its snapshots stay as they were (servable history: `snapshot_as_of`, `snapshots list`, backups) and
its records stay in the access log.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    update,
)

from meshcore.accesslog import AccessLog, AccessRecord
from meshcore.evolution import check_compatible
from meshcore.products import ProductSpec
from meshcore.settings import SNAPSHOTS_FOLDER, Settings
from meshcore.snapshots import WrittenSnapshot
from meshcore.store import as_utc, create_tables, utcnow

metadata = MetaData()

products_table = Table(
    "catalog_products",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("department", String(100), nullable=False, index=True),
    Column("classification", String(20), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("current_snapshot_id", String(200), nullable=True),
    Column("quality_status", String(20), nullable=False, default="unknown"),
    Column("quality_json", JSON, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

snapshots_table = Table(
    "catalog_snapshots",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("product", String(200), ForeignKey("catalog_products.name"), nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("byte_size", BigInteger, nullable=False),
    Column("schema_json", JSON, nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("quality_json", JSON, nullable=True),
    Column("run_id", String(100), nullable=True),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True), nullable=True),
)

# Snapshots taken out of service (one row each, never deleted): a table of its own, so stores made
# before withdrawal existed gain it from `ensure_schema` without a migration.
withdrawals_table = Table(
    "catalog_withdrawals",
    metadata,
    Column("snapshot_id", String(200), ForeignKey("catalog_snapshots.id"), primary_key=True),
    Column("product", String(200), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # one of OUT_OF_SERVICE
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("access_log_seq", BigInteger, nullable=False),  # the chained record of the change
)

# Snapshots whose file no longer matches the checksum stored at publish (found by a gateway on first
# open, or by `civicmesh snapshots verify`): never served while marked; a passing verify clears it.
broken_table = Table(
    "catalog_broken_snapshots",
    metadata,
    Column("snapshot_id", String(200), ForeignKey("catalog_snapshots.id"), primary_key=True),
    Column("product", String(200), nullable=False, index=True),
    Column("detail", Text, nullable=False),  # what is wrong, never the file path
    Column("detected_by", String(200), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
)

# When a build last confirmed a product's current snapshot (new content or unchanged): the freshness
# clock's "last verified", apart from the snapshot's `published_at` ("last changed").
verifications_table = Table(
    "catalog_verifications",
    metadata,
    Column("product", String(200), ForeignKey("catalog_products.name"), primary_key=True),
    Column("snapshot_id", String(200), nullable=False),
    Column("run_id", String(100), nullable=True),
    Column("verified_at", DateTime(timezone=True), nullable=False),
)

PUBLISHED = "published"
RETIRED = "retired"  # the product's last current snapshot when an owner retired the product
OUT_OF_SERVICE = ("withdrawn", "quarantined", RETIRED)  # by an owner | by the build's PII gate | retired
MAX_REASON_CHARS = 2000

QUALITY_STATUSES = ("passed", "warned", "failed")  # what the publish gate decided; "unknown" before


@dataclass(frozen=True)
class Snapshot:
    id: str
    product: str
    path: Path
    checksum: str
    row_count: int
    byte_size: int
    schema: tuple[tuple[str, str], ...]
    spec: ProductSpec
    published_at: datetime
    quality: dict[str, Any] | None
    run_id: str | None
    status: str = PUBLISHED  # or one of OUT_OF_SERVICE
    status_reason: str | None = None  # why it was taken out of service
    status_actor: str | None = None
    status_at: datetime | None = None
    broken: str | None = None  # set while its file fails the checksum check: what is wrong
    broken_at: datetime | None = None
    removed: bool = False  # retention removed it (and its file, unless another snapshot shares it)

    @property
    def servable(self) -> bool:
        """False once withdrawn or quarantined: then no read path may serve it. A retired product's
        last snapshot stays servable history (its data was never found wrong)."""
        return self.status in (PUBLISHED, RETIRED)

    @classmethod
    def from_row(cls, row: Any, home: Path) -> Snapshot:
        """From a row of `_snapshot_select()` (the snapshot with its withdrawal and broken mark)."""
        return cls(
            id=row.id,
            product=row.product,
            path=home / row.path,  # an absolute stored path stays as it is
            checksum=row.checksum,
            row_count=row.row_count,
            byte_size=row.byte_size,
            schema=tuple((str(n), str(t)) for n, t in row.schema_json),
            spec=ProductSpec.from_json(row.spec_json),
            published_at=as_utc(row.published_at),
            quality=row.quality_json,
            run_id=row.run_id,
            status=row.w_kind or PUBLISHED,
            status_reason=row.w_reason,
            status_actor=row.w_actor,
            status_at=as_utc(row.w_at) if row.w_at else None,
            broken=row.b_detail,
            broken_at=as_utc(row.b_at) if row.b_at else None,
            removed=row.removed_at is not None,
        )


def _snapshot_select() -> Any:
    """Snapshots joined with their withdrawal (columns `w_*`, NULL while published) and their
    broken mark (`b_*`, NULL while intact)."""
    w, b = withdrawals_table.c, broken_table.c
    return select(
        snapshots_table,
        w.kind.label("w_kind"),
        w.reason.label("w_reason"),
        w.actor.label("w_actor"),
        w.at.label("w_at"),
        b.detail.label("b_detail"),
        b.detected_at.label("b_at"),
    ).select_from(
        snapshots_table.outerjoin(withdrawals_table, w.snapshot_id == snapshots_table.c.id).outerjoin(
            broken_table, b.snapshot_id == snapshots_table.c.id
        )
    )


class Authority(Protocol):
    """What allowed (or refused) taking a snapshot out of service; recorded in the access log.

    A `policies.decision.Decision` is one (the CLI passes the owner's `grant` decision);
    `SystemAuthority` is the build's own rule (the PII gate)."""

    @property
    def allowed(self) -> bool: ...

    @property
    def rule(self) -> str | None: ...

    @property
    def reason(self) -> str: ...

    @property
    def policy_version(self) -> str | None: ...


@dataclass(frozen=True)
class SystemAuthority:
    """A built-in rule of the platform itself, e.g. `SystemAuthority("civicmesh PII gate", ...)`."""

    rule: str
    reason: str
    allowed: bool = True
    policy_version: str | None = None


@dataclass(frozen=True)
class WithdrawResult:
    snapshot: Snapshot  # the snapshot taken out of service, with its new status
    current: Snapshot | None  # the product's current snapshot afterwards; None: nothing is served
    moved: bool  # whether the current pointer moved (the snapshot was current)
    access_log_seq: int  # the chained record of the withdrawal


class WithdrawError(ValueError):
    """The withdrawal cannot be done as asked (unknown product or snapshot, already out of
    service, no reason); nothing changed."""


class WithdrawRefused(PermissionError):
    """The actor may not withdraw this product's snapshots; a `deny` record was chained."""


class SnapshotWithdrawn(ValueError):
    """A publish would bring back exactly the content and spec of a snapshot taken out of service."""


@dataclass(frozen=True)
class CatalogEntry:
    spec: ProductSpec
    current: Snapshot | None
    quality_status: str
    quality: dict[str, Any] | None
    updated_at: datetime
    # When a build last confirmed `current` (None: no build since the catalog recorded it).
    verified_at: datetime | None = None
    retired: str | None = None  # the reason, once an owner retired the product


def _refuse_withdrawn_twin(conn: Any, spec: ProductSpec, checksum: str) -> None:
    twin = conn.execute(
        _snapshot_select()
        .where(snapshots_table.c.product == spec.name)
        .where(snapshots_table.c.checksum == checksum)
        .where(snapshots_table.c.spec_json == spec.to_json())
        .where(withdrawals_table.c.kind.is_not(None))
    ).first()
    if twin is not None:
        raise SnapshotWithdrawn(
            f"{spec.name}: not published: the same content and spec were {twin.w_kind} as snapshot "
            f"{twin.id} (why: `civicmesh snapshots list {spec.name}`). Fix the data or the contract, "
            "then build again."
        )


def _retirements(conn: Any, names: Sequence[str] | None = None) -> dict[str, str]:
    """{product: reason} of retired products (of `names`, or all)."""
    query = select(withdrawals_table.c.product, withdrawals_table.c.reason).where(
        withdrawals_table.c.kind == RETIRED
    )
    if names is not None:
        query = query.where(withdrawals_table.c.product.in_(names))
    return {r.product: r.reason for r in conn.execute(query)}


def _refuse_retired(conn: Any, spec: ProductSpec) -> None:
    reason = _retirements(conn, [spec.name]).get(spec.name)
    if reason is not None:
        raise SnapshotWithdrawn(
            f"{spec.name}: not published: the product was retired ({reason}). Remove its model from "
            "the dbt project, or publish it under a new name."
        )


def _snapshot_in(conn: Any, snapshot_id: str | None, home: Path) -> Snapshot | None:
    if snapshot_id is None:
        return None
    row = conn.execute(_snapshot_select().where(snapshots_table.c.id == snapshot_id)).first()
    return Snapshot.from_row(row, home) if row else None


def _withdrawal_reason(kind: str, reason: str) -> str:
    """`reason` stripped; WithdrawError for an unknown `kind` or a reason empty or too long."""
    reason = reason.strip()
    if kind not in OUT_OF_SERVICE:
        raise WithdrawError(f"kind must be one of {OUT_OF_SERVICE}, not {kind!r}")
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise WithdrawError(f"a reason of 1 to {MAX_REASON_CHARS} characters is required")
    return reason


def _withdraw_record(
    product: str,
    snapshot_id: str | None,
    actor: str,
    kind: str,
    authority: Authority,
    roles: Sequence[str],
) -> AccessRecord:
    """The access-log record of a withdrawal (`withdraw`), quarantine (`quarantine`) or retirement
    (`retire`) by `actor`."""
    return AccessRecord(
        request_id=uuid.uuid4().hex,
        action={"withdrawn": "withdraw", "quarantined": "quarantine"}.get(kind, "retire"),
        status=200,
        decision="allow",
        reason=authority.reason,
        subject=actor,
        roles=list(roles),
        product=product,
        snapshot_id=snapshot_id,
        rule=authority.rule,
        policy_version=authority.policy_version,
    )


def _reason_digest(reason: str) -> str:
    # The log keeps no free text (it may hold personal data), only a digest that pins the catalog's.
    return "sha256:" + hashlib.sha256(reason.encode()).hexdigest()[:16]


def legacy_relative_path(stored: str, home: Path) -> str | None:
    """The home-relative form of an absolute snapshot path written before paths were relative.

    Inside `home`: relative to it. Elsewhere (a home copied or restored to another path): the part
    from the last `snapshots/` folder on, since snapshots are laid out as
    `snapshots/<department>/<product>/<checksum>.parquet` under whichever folder the home was.
    None when the path is neither (left absolute, read as it is)."""
    path = Path(stored)
    if path.is_relative_to(home):
        return path.relative_to(home).as_posix()
    parts = path.parts
    if SNAPSHOTS_FOLDER in parts[:-1]:
        last = len(parts) - 1 - parts[::-1].index(SNAPSHOTS_FOLDER)
        return Path(*parts[last:]).as_posix()
    return None


class Catalog:
    """`home` resolves the stored relative paths; default: the home of `Settings.from_env()`."""

    def __init__(self, engine: Engine, home: Path | None = None) -> None:
        self.engine = engine
        # Absolute but not resolved: a snapshots folder that is a symlink (shared storage) stays inside.
        self.home = Path(os.path.abspath(home or Settings.from_env().home))
        self._has_verifications = False  # known once seen (older stores lack the table)

    def ensure_schema(self) -> Catalog:
        create_tables(self.engine, metadata)
        self._relativise_legacy_paths()
        return self

    def stored_path(self, path: Path) -> str:
        """How `path` is stored: relative to the home (POSIX form) when inside it, else absolute."""
        absolute = Path(os.path.abspath(path))
        if absolute.is_relative_to(self.home):
            return absolute.relative_to(self.home).as_posix()
        return str(absolute)

    def _relativise_legacy_paths(self) -> None:
        """Migration: store the absolute paths of older homes relative (reads and writes only
        when there are any, so a read-only store still opens)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(snapshots_table.c.id, snapshots_table.c.path).where(snapshots_table.c.path.like("/%"))
            ).all()
        moves = {r.id: rel for r in rows if (rel := legacy_relative_path(r.path, self.home)) is not None}
        if not moves:
            return
        with self.engine.begin() as conn:
            for snapshot_id, relative in moves.items():
                conn.execute(
                    update(snapshots_table).where(snapshots_table.c.id == snapshot_id).values(path=relative)
                )

    # -- writes -------------------------------------------------------------------------------

    def _upsert_product(self, conn: Any, spec: ProductSpec, now: datetime, **values: Any) -> None:
        row = {
            "department": spec.department,
            "classification": spec.classification,
            "owner": spec.owner,
            "spec_json": spec.to_json(),
            "updated_at": now,
            **values,
        }
        exists = conn.execute(select(products_table.c.name).where(products_table.c.name == spec.name)).first()
        if exists:
            conn.execute(update(products_table).where(products_table.c.name == spec.name).values(**row))
        else:
            conn.execute(products_table.insert().values(name=spec.name, **row))

    def publish(
        self,
        spec: ProductSpec,
        written: WrittenSnapshot,
        quality: dict[str, Any] | None = None,
        run_id: str | None = None,
        now: datetime | None = None,
    ) -> Snapshot:
        """Register `written` and make it current, atomically. Idempotent: republishing the
        current content returns the current snapshot instead of adding a duplicate.

        `quality` is the publish gate's record (its `status` passed or warned; failed raises
        ValueError). Raises SnapshotWithdrawn when `written` has the checksum and spec of a snapshot
        of this product that was withdrawn or quarantined (a changed spec, e.g. a newly declared
        mask, may publish the same bytes again)."""
        now = now or utcnow()
        status = (quality or {}).get("status") or "passed"
        if status not in ("passed", "warned"):
            raise ValueError(f"{spec.name}: the publish gate said {status!r}; not publishing")
        with self.engine.begin() as conn:
            _refuse_retired(conn, spec)
            current = conn.execute(
                _snapshot_select()
                .join(products_table, products_table.c.current_snapshot_id == snapshots_table.c.id)
                .where(products_table.c.name == spec.name)
            ).first()
            if (
                current is not None
                and current.checksum == written.checksum
                and current.spec_json == spec.to_json()
            ):
                self._upsert_product(conn, spec, now, quality_status=status, quality_json=quality)
                self._record_verified(conn, spec.name, current.id, run_id, now)
                return Snapshot.from_row(current, self.home)
            _refuse_withdrawn_twin(conn, spec, written.checksum)
            if current is not None:
                check_compatible(ProductSpec.from_json(current.spec_json), spec)
            self._upsert_product(conn, spec, now, quality_status=status, quality_json=quality)
            snapshot_id = self._insert_snapshot(conn, spec, written, quality, run_id, now)
            conn.execute(
                update(products_table)
                .where(products_table.c.name == spec.name)
                .values(current_snapshot_id=snapshot_id)
            )
            self._record_verified(conn, spec.name, snapshot_id, run_id, now)
            published = _snapshot_in(conn, snapshot_id, self.home)
            assert published is not None
            return published

    def _insert_snapshot(
        self,
        conn: Any,
        spec: ProductSpec,
        written: WrittenSnapshot,
        quality: dict[str, Any] | None,
        run_id: str | None,
        now: datetime,
    ) -> str:
        """Insert `written` as the next snapshot of `spec` (not yet current); returns its id."""
        seq = (conn.execute(select(func.max(snapshots_table.c.seq))).scalar() or 0) + 1
        snapshot_id = f"{spec.name}@{now:%Y%m%dT%H%M%S%fZ}-{written.checksum[:8]}"
        conn.execute(
            snapshots_table.insert().values(
                id=snapshot_id,
                seq=seq,
                product=spec.name,
                path=self.stored_path(written.path),
                checksum=written.checksum,
                row_count=written.row_count,
                byte_size=written.byte_size,
                schema_json=[list(c) for c in written.schema],
                spec_json=spec.to_json(),
                quality_json=quality,
                run_id=run_id,
                published_at=now,
            )
        )
        return snapshot_id

    def _record_verified(
        self, conn: Any, product: str, snapshot_id: str, run_id: str | None, now: datetime
    ) -> None:
        conn.execute(verifications_table.delete().where(verifications_table.c.product == product))
        conn.execute(
            verifications_table.insert().values(
                product=product, snapshot_id=snapshot_id, run_id=run_id, verified_at=now
            )
        )

    def record_quality(self, spec: ProductSpec, status: str, detail: dict[str, Any]) -> None:
        """Record the publish gate's latest outcome (`QUALITY_STATUSES`; `detail` as in
        `orchestration.gate.GateResult.quality`); never moves the current pointer, so a failed gate
        leaves the last good snapshot current."""
        if status not in QUALITY_STATUSES:
            raise ValueError(f"unknown quality status {status!r}")
        now = utcnow()
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(products_table.c.name).where(products_table.c.name == spec.name)
            ).first()
            values = {"quality_status": status, "quality_json": detail, "updated_at": now}
            if exists:
                conn.execute(
                    update(products_table).where(products_table.c.name == spec.name).values(**values)
                )
            else:
                self._upsert_product(conn, spec, now, **values)

    # -- reads --------------------------------------------------------------------------------

    def version(self) -> tuple[int, str]:
        """Changes whenever anything is published, withdrawn or marked broken, or a quality status
        moves (cheap to poll)."""
        with self.engine.connect() as conn:
            seq = conn.execute(select(func.max(snapshots_table.c.seq))).scalar() or 0
            updated = conn.execute(select(func.max(products_table.c.updated_at))).scalar()
        return int(seq), str(updated)

    def entries(self, include_retired: bool = False) -> list[CatalogEntry]:
        """Every product in discovery, by name; retired ones only with `include_retired`."""
        found = self._entries(select(products_table).order_by(products_table.c.name))
        return [e for e in found if include_retired or e.retired is None]

    def entry(self, name: str) -> CatalogEntry | None:
        """One product by name, retired or not (`CatalogEntry.retired`)."""
        found = self._entries(select(products_table).where(products_table.c.name == name))
        return found[0] if found else None

    def _entries(self, products_query: Any) -> list[CatalogEntry]:
        with self.engine.connect() as conn:
            products = conn.execute(products_query).all()
            ids = [p.current_snapshot_id for p in products if p.current_snapshot_id]
            snaps = {
                r.id: Snapshot.from_row(r, self.home)
                for r in conn.execute(_snapshot_select().where(snapshots_table.c.id.in_(ids)))
            }
            verified = self._verifications(conn, [p.name for p in products])
            retired = _retirements(conn, [p.name for p in products])
        return [
            CatalogEntry(
                spec=ProductSpec.from_json(p.spec_json),
                current=snaps.get(p.current_snapshot_id) if p.current_snapshot_id else None,
                quality_status=p.quality_status,
                quality=p.quality_json,
                updated_at=as_utc(p.updated_at),
                verified_at=verified.get((p.name, p.current_snapshot_id)),
                retired=retired.get(p.name),
            )
            for p in products
        ]

    def _verifications(self, conn: Any, names: list[str]) -> dict[tuple[str, str], datetime]:
        """(product, snapshot id) -> when a build last verified it. A store written before
        verifications were recorded has no such table until `ensure_schema`: none then."""
        if not self._has_verifications:
            self._has_verifications = inspect(conn).has_table(verifications_table.name)
            if not self._has_verifications:
                return {}
        query = select(verifications_table).where(verifications_table.c.product.in_(names))
        return {(r.product, r.snapshot_id): as_utc(r.verified_at) for r in conn.execute(query)}

    def current(self, name: str) -> Snapshot | None:
        entry = self.entry(name)
        return entry.current if entry else None

    def snapshots(self, name: str, include_removed: bool = False) -> list[Snapshot]:
        """Every snapshot of `name`, newest first, withdrawn and quarantined ones included (see
        `Snapshot.status`)."""
        query = _snapshot_select().where(snapshots_table.c.product == name)
        if not include_removed:
            query = query.where(snapshots_table.c.removed_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(snapshots_table.c.seq.desc())).all()
        return [Snapshot.from_row(r, self.home) for r in rows]

    def snapshot_as_of(self, name: str, as_of: datetime) -> Snapshot | None:
        """The snapshot to serve for `as_of`: the newest *servable* one published at or before it.

        A snapshot withdrawn or quarantined since is skipped, so `asOf` a time when it was current
        answers with the last good snapshot before it (what "current" moved back to), or None when
        there is none."""
        as_of = as_utc(as_of)
        return next((s for s in self.snapshots(name) if s.servable and s.published_at <= as_of), None)

    def last_current(self, snapshot: Snapshot) -> datetime:
        """The last moment `snapshot` was what `asOf` selects: just before the next servable
        snapshot of its product was published (its own publication time if none was)."""
        later = [
            s.published_at
            for s in self.snapshots(snapshot.product)
            if s.servable and s.published_at > snapshot.published_at
        ]
        return min(later) - timedelta(microseconds=1) if later else snapshot.published_at

    def snapshot(self, snapshot_id: str) -> Snapshot | None:
        with self.engine.connect() as conn:
            return _snapshot_in(conn, snapshot_id, self.home)

    # -- taking snapshots out of service ------------------------------------------------------

    def withdraw(
        self,
        product: str,
        snapshot_id: str | None,
        reason: str,
        actor: str,
        kind: str = "withdrawn",
        *,
        authority: Authority,
        access_log: AccessLog,
        roles: Sequence[str] = (),
        now: datetime | None = None,
    ) -> WithdrawResult:
        """Take one snapshot of `product` out of service for good: `kind` "withdrawn" (an owner)
        or "quarantined" (the build's PII gate), or retire the product (`RETIRED`, an owner: its
        current snapshot, and nothing becomes current). `snapshot_id` None means the current one.

        In one transaction, under the store's write lock: the withdrawal row (with `reason`); when
        the snapshot was current, the current pointer moved back to the newest earlier snapshot
        that is servable, not removed and not marked broken (or to none); and an access-log record
        (action `withdraw` | `quarantine` | `retire`, subject `actor`, the snapshot id, `authority`'s rule and
        policy version, and a digest of `reason`). Gateways see it at their next catalog poll.

        Raises WithdrawRefused when `authority.allowed` is false (after chaining a `deny` record),
        WithdrawError for an unknown product or snapshot, one already out of service, a missing
        current snapshot, an empty reason or an unknown kind (nothing changed).
        """
        reason = _withdrawal_reason(kind, reason)
        record = _withdraw_record(product, snapshot_id, actor, kind, authority, roles)
        if not authority.allowed:
            access_log.append([replace(record, status=403, decision="deny", error_code="FORBIDDEN")])
            raise WithdrawRefused(f"{actor} may not withdraw snapshots of {product}: {authority.reason}")
        now = now or utcnow()
        with self.engine.begin() as conn:
            access_log.lock(conn)  # first: every read below sees the state this change applies to
            target, current_id = self._withdrawal_target(conn, product, snapshot_id)
            moved = target.id == current_id
            if kind == RETIRED and not moved:
                raise WithdrawError(f"retiring {product} takes its current snapshot, not {target.id}")
            # A retired product serves nothing current; a withdrawn snapshot hands over to the last good.
            successor = self._previous_good(conn, target) if moved and kind != RETIRED else None
            new_current = successor.id if successor else None
            record.snapshot_id = target.id
            record.reason += (
                f"; {kind} {target.id} (reason {_reason_digest(reason)}); "
                f"current {'moved to ' + (new_current or 'none') if moved else 'unchanged'}"
            )
            [seq] = access_log.append_in(conn, [record])
            row = {"product": product, "kind": kind, "reason": reason, "actor": actor, "at": now}
            conn.execute(withdrawals_table.insert().values(snapshot_id=target.id, access_log_seq=seq, **row))
            pointer = {"current_snapshot_id": new_current} if moved else {}
            conn.execute(  # updated_at moves `version()`, so gateways reload their catalog state
                update(products_table)
                .where(products_table.c.name == product)
                .values(updated_at=now, **pointer)
            )
            current = successor if moved else _snapshot_in(conn, current_id, self.home)
            withdrawn = _snapshot_in(conn, target.id, self.home)
        assert withdrawn is not None
        return WithdrawResult(snapshot=withdrawn, current=current, moved=moved, access_log_seq=seq)

    def _withdrawal_target(
        self, conn: Any, product: str, snapshot_id: str | None
    ) -> tuple[Snapshot, str | None]:
        """(the snapshot to withdraw, the product's current snapshot id) or WithdrawError."""
        row = conn.execute(
            select(products_table.c.current_snapshot_id)
            .where(products_table.c.name == product)
            .with_for_update()
        ).first()
        if row is None:
            raise WithdrawError(f"no product named {product!r} has been published")
        current_id = row.current_snapshot_id
        wanted = snapshot_id or current_id
        if wanted is None:
            raise WithdrawError(f"{product} has no current snapshot to withdraw")
        target = _snapshot_in(conn, wanted, self.home)
        if target is None or target.product != product:
            raise WithdrawError(f"{product} has no snapshot {wanted!r}")
        if target.status != PUBLISHED:
            raise WithdrawError(f"snapshot {target.id} is already {target.status}")
        return target, current_id

    def _previous_good(self, conn: Any, target: Snapshot) -> Snapshot | None:
        """The newest snapshot of the same product published before `target` (by publication
        order), servable, not removed and not marked broken."""
        target_seq = select(snapshots_table.c.seq).where(snapshots_table.c.id == target.id).scalar_subquery()
        rows = conn.execute(
            _snapshot_select()
            .where(snapshots_table.c.product == target.product)
            .where(snapshots_table.c.seq < target_seq)
            .where(snapshots_table.c.removed_at.is_(None))
            .where(withdrawals_table.c.kind.is_(None))
            .where(broken_table.c.detail.is_(None))
            .order_by(snapshots_table.c.seq.desc())
            .limit(1)
        ).first()
        return Snapshot.from_row(rows, self.home) if rows else None

    # -- integrity ----------------------------------------------------------------------------

    def mark_broken(
        self, snapshot_id: str, detail: str, detected_by: str, now: datetime | None = None
    ) -> bool:
        """Mark a snapshot whose file failed its checksum check (`detail` says what is wrong,
        never the path). Idempotent; True when the mark is new or changed (then `version()` moves,
        so every gateway sees it at its next poll). Raises LookupError for an unknown snapshot."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            snap = _snapshot_in(conn, snapshot_id, self.home)
            if snap is None:
                raise LookupError(f"no snapshot {snapshot_id!r}")
            if snap.broken == detail:
                return False
            conn.execute(broken_table.delete().where(broken_table.c.snapshot_id == snapshot_id))
            conn.execute(
                broken_table.insert().values(
                    snapshot_id=snapshot_id,
                    product=snap.product,
                    detail=detail,
                    detected_by=detected_by[:200],
                    detected_at=now,
                )
            )
            conn.execute(
                update(products_table).where(products_table.c.name == snap.product).values(updated_at=now)
            )
        return True

    def clear_broken(
        self, snapshot_id: str, now: datetime | None = None, marked_at: datetime | None = None
    ) -> bool:
        """Lift the mark once the file verifies again (e.g. restored from backup); True if one was
        lifted. With `marked_at` (the `broken_at` the verifying check saw before it hashed), only
        that mark is lifted: one made since (a newer finding) stays."""
        mark = broken_table.c
        with self.engine.begin() as conn:
            snap = _snapshot_in(conn, snapshot_id, self.home)
            if snap is None or snap.broken is None:
                return False
            lift = broken_table.delete().where(mark.snapshot_id == snapshot_id)
            if marked_at is not None:
                lift = lift.where(mark.detected_at == marked_at)
            if conn.execute(lift).rowcount == 0:
                return False
            conn.execute(
                update(products_table)
                .where(products_table.c.name == snap.product)
                .values(updated_at=now or utcnow())
            )
        return True

    def broken_snapshots(self, product: str | None = None) -> list[Snapshot]:
        """Snapshots marked broken that could still be served (not withdrawn, not removed), newest
        first: what makes a product, and a gateway's readiness, fail."""
        query = (
            _snapshot_select()
            .where(broken_table.c.detail.is_not(None))
            .where(withdrawals_table.c.kind.is_(None))
            .where(snapshots_table.c.removed_at.is_(None))
        )
        if product is not None:
            query = query.where(snapshots_table.c.product == product)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(snapshots_table.c.seq.desc())).all()
        return [Snapshot.from_row(r, self.home) for r in rows]
