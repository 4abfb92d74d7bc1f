"""The catalog of published products and their immutable snapshots.

Publishing registers a snapshot and moves the product's current pointer in one transaction; a
failed quality gate only records the status and leaves the pointer where it was. Snapshot paths
are stored relative to the home (ARCHITECTURE §2), so a home can be moved, backed up and restored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

from civicmesh.evolution import check_compatible
from civicmesh.products import ProductSpec
from civicmesh.settings import SNAPSHOTS_FOLDER, Settings
from civicmesh.snapshots import WrittenSnapshot

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


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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

    @classmethod
    def from_row(cls, row: Any, home: Path) -> Snapshot:
        return cls(
            id=row.id,
            product=row.product,
            path=home / row.path,  # an absolute stored path stays as it is
            checksum=row.checksum,
            row_count=row.row_count,
            byte_size=row.byte_size,
            schema=tuple((str(n), str(t)) for n, t in row.schema_json),
            spec=ProductSpec.from_json(row.spec_json),
            published_at=_aware(row.published_at),
            quality=row.quality_json,
            run_id=row.run_id,
        )


@dataclass(frozen=True)
class CatalogEntry:
    spec: ProductSpec
    current: Snapshot | None
    quality_status: str
    quality: dict[str, Any] | None
    updated_at: datetime
    # When a build last confirmed `current` (None: no build since the catalog recorded it).
    verified_at: datetime | None = None


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
        metadata.create_all(self.engine)
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
        current content returns the current snapshot instead of adding a duplicate."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            current = conn.execute(
                select(snapshots_table)
                .join(products_table, products_table.c.current_snapshot_id == snapshots_table.c.id)
                .where(products_table.c.name == spec.name)
            ).first()
            if (
                current is not None
                and current.checksum == written.checksum
                and current.spec_json == spec.to_json()
            ):
                self._upsert_product(conn, spec, now, quality_status="passed", quality_json=quality)
                self._record_verified(conn, spec.name, current.id, run_id, now)
                return Snapshot.from_row(current, self.home)
            if current is not None:
                check_compatible(ProductSpec.from_json(current.spec_json), spec)
            seq = (conn.execute(select(func.max(snapshots_table.c.seq))).scalar() or 0) + 1
            snapshot_id = f"{spec.name}@{now:%Y%m%dT%H%M%S%fZ}-{written.checksum[:8]}"
            self._upsert_product(conn, spec, now, quality_status="passed", quality_json=quality)
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
            conn.execute(
                update(products_table)
                .where(products_table.c.name == spec.name)
                .values(current_snapshot_id=snapshot_id)
            )
            self._record_verified(conn, spec.name, snapshot_id, run_id, now)
            row = conn.execute(select(snapshots_table).where(snapshots_table.c.id == snapshot_id)).one()
            return Snapshot.from_row(row, self.home)

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
        """Record the latest quality gate outcome; never moves the current pointer, so a failed
        gate leaves the last good snapshot current."""
        if status not in ("passed", "failed"):
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
        """Changes whenever anything is published or a quality status moves (cheap to poll)."""
        with self.engine.connect() as conn:
            seq = conn.execute(select(func.max(snapshots_table.c.seq))).scalar() or 0
            updated = conn.execute(select(func.max(products_table.c.updated_at))).scalar()
        return int(seq), str(updated)

    def entries(self) -> list[CatalogEntry]:
        return self._entries(select(products_table).order_by(products_table.c.name))

    def entry(self, name: str) -> CatalogEntry | None:
        found = self._entries(select(products_table).where(products_table.c.name == name))
        return found[0] if found else None

    def _entries(self, products_query: Any) -> list[CatalogEntry]:
        with self.engine.connect() as conn:
            products = conn.execute(products_query).all()
            ids = [p.current_snapshot_id for p in products if p.current_snapshot_id]
            snaps = {
                r.id: Snapshot.from_row(r, self.home)
                for r in conn.execute(select(snapshots_table).where(snapshots_table.c.id.in_(ids)))
            }
            verified = self._verifications(conn, [p.name for p in products])
        return [
            CatalogEntry(
                spec=ProductSpec.from_json(p.spec_json),
                current=snaps.get(p.current_snapshot_id) if p.current_snapshot_id else None,
                quality_status=p.quality_status,
                quality=p.quality_json,
                updated_at=_aware(p.updated_at),
                verified_at=verified.get((p.name, p.current_snapshot_id)),
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
        return {(r.product, r.snapshot_id): _aware(r.verified_at) for r in conn.execute(query)}

    def current(self, name: str) -> Snapshot | None:
        entry = self.entry(name)
        return entry.current if entry else None

    def snapshots(self, name: str, include_removed: bool = False) -> list[Snapshot]:
        query = select(snapshots_table).where(snapshots_table.c.product == name)
        if not include_removed:
            query = query.where(snapshots_table.c.removed_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(snapshots_table.c.seq.desc())).all()
        return [Snapshot.from_row(r, self.home) for r in rows]

    def snapshot_as_of(self, name: str, as_of: datetime) -> Snapshot | None:
        """The snapshot that was current at `as_of` (the newest published at or before it)."""
        return next((s for s in self.snapshots(name) if s.published_at <= _aware(as_of)), None)

    def snapshot(self, snapshot_id: str) -> Snapshot | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(snapshots_table).where(snapshots_table.c.id == snapshot_id)).first()
        return Snapshot.from_row(row, self.home) if row else None
