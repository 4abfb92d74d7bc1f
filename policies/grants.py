"""Runtime grants: access requests in the metadata store, approved by a department owner.

A request becomes a grant when an owner of the product's department (never the requester) approves
it; the grant expires by itself (`expires_at`) and can be revoked. Every step is appended to
`access_request_events` and, in the same transaction, to the hash-chained access log (actions
`request`, `approve`, `reject`, `revoke`, `expire`; subject = the actor; the reason names the request
id; never the free-text purpose or note, which may hold personal data). The policy engine reads
the approved, unexpired grants and turns each into
one `p, USER, DEPT, PRODUCT, ACTION` rule, so approvals take effect on its next refresh.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)

from meshcore.accesslog import AccessLog, AccessRecord
from meshcore.products import ProductSpec
from meshcore.store import as_utc, create_tables, utcnow
from policies.directory import Directory, User
from policies.names import GLOBAL_DOMAIN, PolicyError, check_name


class PolicyInForce(Protocol):
    """What access requests read of the policy in force (`policies.engine.PolicyEngine` is one):
    who exists, their roles as (role, domain) pairs, which roles own a department, and the access
    log the engine writes to (None: requests bring their own)."""

    audit_log: AccessLog | None

    @property
    def directory(self) -> Directory: ...

    def user(self, subject: str) -> User | None: ...

    def roles(self, subject: str) -> list[tuple[str, str]]: ...


# audit and grant are role rights: granting them through a request would let owners mint owners.
REQUESTABLE_ACTIONS = ("discover", "read", "read_pii", "export", "lineage")
MAX_DAYS = 365
MAX_TEXT = 2000  # characters of a purpose or a note
MAX_PRODUCT, MAX_DEPARTMENT = 200, 100  # the lengths of their columns below

metadata = MetaData()

access_requests = Table(
    "access_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(100), nullable=False, index=True),
    Column("product", String(200), nullable=False, index=True),
    Column("department", String(100), nullable=False),
    Column("action", String(20), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("days", Integer, nullable=False),
    Column("status", String(20), nullable=False),  # pending | approved | rejected | revoked
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_by", String(100), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

access_request_events = Table(
    "access_request_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("access_requests.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("event", String(20), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)


def plain_text(kind: str, value: object) -> str:
    """A purpose or note as every store keeps it: a string of at most MAX_TEXT characters with no
    control character but newline and tab (PostgreSQL refuses a NUL: the request failed as an
    internal error). Raises PolicyError."""
    if (
        not isinstance(value, str)
        or len(value) > MAX_TEXT
        or any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in value)
    ):
        raise PolicyError(f"a {kind} is plain text of at most {MAX_TEXT} characters")
    return value


@dataclass(frozen=True)
class AccessRequest:
    id: int
    subject: str
    product: str
    department: str
    action: str
    purpose: str
    days: int
    status: str  # as stored; see `state()` for the effective one
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    expires_at: datetime | None
    revoked_by: str | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> AccessRequest:
        return cls(
            id=row.id,
            subject=row.subject,
            product=row.product,
            department=row.department,
            action=row.action,
            purpose=row.purpose,
            days=row.days,
            status=row.status,
            requested_at=as_utc(row.requested_at) or utcnow(),
            decided_by=row.decided_by,
            decided_at=as_utc(row.decided_at),
            expires_at=as_utc(row.expires_at),
            revoked_by=row.revoked_by,
            revoked_at=as_utc(row.revoked_at),
        )

    def state(self, now: datetime | None = None) -> str:
        """pending | active | expired | rejected | revoked."""
        if self.status != "approved":
            return self.status
        now = now or utcnow()
        return "active" if self.expires_at is not None and self.expires_at > now else "expired"


def ensure_schema(engine: Engine) -> None:
    create_tables(engine, metadata)


def active_grants(engine: Engine, now: datetime | None = None) -> list[AccessRequest]:
    """Approved, unrevoked, unexpired grants, oldest first (what the policy engine loads)."""
    now = now or utcnow()
    query = (
        select(access_requests)
        .where(access_requests.c.status == "approved")
        .where(access_requests.c.expires_at > now)
        .order_by(access_requests.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    # Compare again in Python: SQLite compares the stored text, which is fine for one format only.
    return [g for g in (AccessRequest.from_row(r) for r in rows) if g.state(now) == "active"]


def _stamp(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "?"


def audit_record(
    request: AccessRequest, actor: str, action: str, roles: list[str], detail: str = ""
) -> AccessRecord:
    """The access-log record of one step of an access request (ids and names only, no free text)."""
    reason = f"access request #{request.id}: {request.subject} {request.action} {request.product}"
    if detail:
        reason += f"; {detail}"
    return AccessRecord(
        request_id=f"access-request-{request.id}",
        action=action,
        status=200,
        decision={"approve": "allow", "reject": "deny"}.get(action, "none"),
        reason=reason,
        subject=actor,
        roles=roles,
        product=request.product,
        rule=f"access request #{request.id}",
    )


def record_expiries(
    engine: Engine, access_log: AccessLog, now: datetime | None = None, roles: list[str] | None = None
) -> list[int]:
    """Log each grant that has expired and was not logged as expired yet (once, across processes:
    checked under the store's write lock). Returns the ids of the grants logged now."""
    now = now or utcnow()
    logged = select(access_request_events.c.request_id).where(access_request_events.c.event == "expired")
    query = (
        select(access_requests)
        .where(access_requests.c.status == "approved")
        .where(access_requests.c.expires_at <= now)
        .where(access_requests.c.id.not_in(logged))
        .order_by(access_requests.c.id)
    )
    with engine.connect() as conn:
        if not conn.execute(query.limit(1)).first():
            return []  # the common case: nothing to do, no write lock taken
    with engine.begin() as conn:
        conn.execute(  # take the write lock first, then look again: another process may have logged
            update(access_requests).where(access_requests.c.id < 0).values(status="approved")
        )
        found = [AccessRequest.from_row(r) for r in conn.execute(query).all()]
        expired = [g for g in found if g.state(now) == "expired"]
        if not expired:
            return []
        for g in expired:
            conn.execute(
                access_request_events.insert().values(
                    request_id=g.id, at=now, actor="civicmesh", event="expired", detail=""
                )
            )
        access_log.append_in(
            conn,
            [
                audit_record(g, "civicmesh", "expire", roles or [], f"expired {_stamp(g.expires_at)}")
                for g in expired
            ],
        )
    return [g.id for g in expired]


class AccessRequests:
    """Request, approve, reject, revoke and list access requests, with the policy's rules applied.

    Every change is appended to the access log in the transaction that makes it: if the log cannot
    be written, the change does not happen."""

    def __init__(
        self,
        policy: PolicyInForce,
        engine: Engine,
        clock: Any = utcnow,
        access_log: AccessLog | None = None,
    ) -> None:
        self.policy = policy
        self.engine = engine
        self.clock = clock
        ensure_schema(engine)
        self.access_log = access_log or policy.audit_log or AccessLog(engine).ensure_schema()

    def _log(self, conn: Any, request: AccessRequest, actor: str, action: str, detail: str = "") -> None:
        roles = [f"{r}@{d}" for r, d in self.policy.roles(actor)]
        self.access_log.append_in(conn, [audit_record(request, actor, action, roles, detail)])

    def _event(self, conn: Any, request_id: int, actor: str, event: str, detail: str = "") -> None:
        conn.execute(
            access_request_events.insert().values(
                request_id=request_id, at=self.clock(), actor=actor, event=event, detail=detail
            )
        )

    def _known_user(self, name: str) -> str:
        check_name("user", name)
        if self.policy.user(name) is None:
            raise PolicyError(f"unknown user {name!r}")
        return name

    def _get(self, conn: Any, request_id: int) -> AccessRequest:
        row = conn.execute(select(access_requests).where(access_requests.c.id == request_id)).first()
        if row is None:
            raise PolicyError(f"no access request #{request_id}")
        return AccessRequest.from_row(row)

    def _is_owner(self, user: str, department: str) -> bool:
        owning = {name for name, role in self.policy.directory.roles.items() if role.owns}
        return any(role in owning and dom == department for role, dom in self.policy.roles(user))

    def request(
        self, subject: str, product: ProductSpec, action: str, purpose: str, days: int
    ) -> AccessRequest:
        self._known_user(subject)
        check_name("product", product.name)
        check_name("department", product.department)
        if len(product.name) > MAX_PRODUCT or len(product.department) > MAX_DEPARTMENT:
            raise PolicyError(f"a product name has at most {MAX_PRODUCT} characters")
        plain_text("purpose", purpose)
        if product.department == GLOBAL_DOMAIN:
            raise PolicyError(f"{GLOBAL_DOMAIN!r} is reserved and owns no products")
        if action not in REQUESTABLE_ACTIONS:
            raise PolicyError(f"action {action!r} cannot be requested; use one of {REQUESTABLE_ACTIONS}")
        purpose = purpose.strip()
        if not purpose:
            raise PolicyError("a request needs a purpose")
        if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise PolicyError(f"days must be between 1 and {MAX_DAYS}")
        with self.engine.begin() as conn:
            result = conn.execute(
                access_requests.insert().values(
                    subject=subject,
                    product=product.name,
                    department=product.department,
                    action=action,
                    purpose=purpose,
                    days=days,
                    status="pending",
                    requested_at=self.clock(),
                )
            )
            inserted = result.inserted_primary_key
            assert inserted is not None
            request_id = int(inserted[0])
            self._event(conn, request_id, subject, "requested", purpose)
            created = self._get(conn, request_id)
            self._log(conn, created, subject, "request", f"{days} days requested")
            return created

    def _decide(self, request_id: int, approver: str, approve: bool, note: str) -> AccessRequest:
        self._known_user(approver)
        plain_text("note", note)
        with self.engine.begin() as conn:
            current = self._get(conn, request_id)
            if current.status != "pending":
                raise PolicyError(f"request #{request_id} is {current.status}, not pending")
            if approver == current.subject:
                raise PolicyError("a request cannot be decided by its requester")
            if not self._is_owner(approver, current.department):
                raise PolicyError(f"{approver} is not an owner of {current.department}")
            now = self.clock()
            values: dict[str, Any] = {"decided_by": approver, "decided_at": now}
            if approve:
                values |= {"status": "approved", "expires_at": now + timedelta(days=current.days)}
            else:
                values |= {"status": "rejected"}
            # Guarded on status so two concurrent approvers cannot both act on one request.
            updated = conn.execute(
                update(access_requests)
                .where(access_requests.c.id == request_id)
                .where(access_requests.c.status == "pending")
                .values(**values)
            )
            if updated.rowcount != 1:
                raise PolicyError(f"request #{request_id} changed concurrently")
            self._event(conn, request_id, approver, "approved" if approve else "rejected", note)
            decided = self._get(conn, request_id)
            if approve:
                self._log(conn, decided, approver, "approve", f"valid until {_stamp(decided.expires_at)}")
            else:
                self._log(conn, decided, approver, "reject")
            return decided

    def approve(self, request_id: int, approver: str, note: str = "") -> AccessRequest:
        return self._decide(request_id, approver, True, note)

    def reject(self, request_id: int, approver: str, note: str = "") -> AccessRequest:
        return self._decide(request_id, approver, False, note)

    def revoke(self, request_id: int, actor: str, note: str = "") -> AccessRequest:
        """An owner of the department, or the grantee giving it up, ends a request or grant now."""
        self._known_user(actor)
        plain_text("note", note)
        with self.engine.begin() as conn:
            current = self._get(conn, request_id)
            if current.status not in ("pending", "approved"):
                raise PolicyError(f"request #{request_id} is {current.status}; nothing to revoke")
            if actor != current.subject and not self._is_owner(actor, current.department):
                raise PolicyError(f"{actor} may not revoke request #{request_id}")
            now = self.clock()
            conn.execute(
                update(access_requests)
                .where(access_requests.c.id == request_id)
                .values(status="revoked", revoked_by=actor, revoked_at=now)
            )
            self._event(conn, request_id, actor, "revoked", note)
            revoked = self._get(conn, request_id)
            self._log(conn, revoked, actor, "revoke", f"was {current.state(now)}")
            return revoked

    def get(self, request_id: int) -> AccessRequest:
        with self.engine.connect() as conn:
            return self._get(conn, request_id)

    def list(
        self, subject: str | None = None, product: str | None = None, department: str | None = None
    ) -> list[AccessRequest]:
        query = select(access_requests).order_by(access_requests.c.id)
        if subject is not None:
            query = query.where(access_requests.c.subject == subject)
        if product is not None:
            query = query.where(access_requests.c.product == product)
        if department is not None:
            query = query.where(access_requests.c.department == department)
        with self.engine.connect() as conn:
            return [AccessRequest.from_row(r) for r in conn.execute(query).all()]

    def events(self, request_id: int) -> builtins.list[tuple[datetime, str, str, str]]:
        query = (
            select(access_request_events)
            .where(access_request_events.c.request_id == request_id)
            .order_by(access_request_events.c.id)
        )
        with self.engine.connect() as conn:
            return [(as_utc(r.at) or utcnow(), r.actor, r.event, r.detail) for r in conn.execute(query)]
