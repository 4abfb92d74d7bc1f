"""Access requests over GraphQL: `requestAccess`, `approveAccessRequest`, `rejectAccessRequest`,
`revokeAccess` (mutations) and `accessRequests(status:)` (query).

The same code as `civicmesh access` (`policies.grants.AccessRequests`) decides every step; the
gateway adds only identity and logging:

- the acting user is always the verified token's `sub`, never an argument; the department (the
  policy domain) always comes from the product;
- each step is logged twice over: `policies.grants` appends its own record (request id
  `access-request-<n>`) in the transaction that makes the change, so a change that cannot be
  logged does not happen; and the HTTP request gets its usual gateway record (action `request`,
  `approve`, `reject` or `revoke`; decision `allow`, or `deny` with the reason when refused);
- the step runs in a transaction that takes the store's write lock first (`BEGIN IMMEDIATE` on
  SQLite), so it never fails on a read-to-write upgrade while the access log is committing;
- an approval or revocation reloads this process's policy at once (other workers within their
  check interval, 2 s by default), so the grant takes effect for reads right away;
- a request for a product the caller may not discover gets exactly the answer a request for a
  product that does not exist gets (both are recorded as pending for the department's owners), so
  requesting reveals nothing about what exists;
- deciding or revoking a request the caller may not know of (not its requester, not an owner of its
  department, not an auditor) is answered exactly as for a request that does not exist: no
  department, state or requester leaks to a stranger.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
from collections.abc import Callable, Iterator
from enum import Enum

import anyio.to_thread
import strawberry
from sqlalchemy import Connection

from gateway.context import RequestContext, Touch
from gateway.errors import BAD_USER_INPUT, FORBIDDEN, GovernedError, bad_input
from meshcore.accesslog import AccessLog
from meshcore.products import ProductSpec
from policies.decision import Decision
from policies.engine import PolicyEngine
from policies.grants import REQUESTABLE_ACTIONS, AccessRequest, AccessRequests
from policies.names import GLOBAL_DOMAIN, PolicyError, is_name

AccessAction = strawberry.enum(  # type: ignore[call-overload]  # an enum built at import time
    Enum("AccessAction", {a.upper(): a for a in REQUESTABLE_ACTIONS}),
    description="What a request may ask for (audit and grant are roles, not requests).",
)


@strawberry.enum(description="The effective state of an access request.")
class AccessRequestState(Enum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"
    REJECTED = "rejected"
    REVOKED = "revoked"


@strawberry.type(description="An access request and, once approved, the grant it became.")
class AccessRequestInfo:
    id: int
    subject: str
    product: str
    department: str
    action: str
    purpose: str
    days: int
    state: AccessRequestState
    requested_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_by: str | None
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, r: AccessRequest) -> AccessRequestInfo:
        return cls(
            id=r.id,
            subject=r.subject,
            product=r.product,
            department=r.department,
            action=r.action,
            purpose=r.purpose,
            days=r.days,
            state=AccessRequestState(r.state()),
            requested_at=r.requested_at,
            decided_by=r.decided_by,
            decided_at=r.decided_at,
            expires_at=r.expires_at,
            revoked_by=r.revoked_by,
            revoked_at=r.revoked_at,
        )


# -- the store, inside one transaction with the access log -----------------------------------------


@functools.lru_cache(maxsize=8)
def _cached_store(policy: PolicyEngine, access_log: AccessLog) -> AccessRequests:
    # Created once, not per mutation (it creates its tables); logs through the gateway's log.
    try:
        return AccessRequests(policy, access_log.engine, access_log=access_log)
    except TypeError:  # a policies version without its own logging
        return AccessRequests(policy, access_log.engine)


def _store(ctx: RequestContext) -> AccessRequests:
    return _cached_store(ctx.policy, ctx.access_log)


class _InTransaction:
    """Stands in for the Engine inside AccessRequests: every `begin()`/`connect()` yields the one
    open connection, so its writes join our transaction (and the access-log record) and commit or
    roll back with it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        yield self.conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        yield self.conn


def _transact(ctx: RequestContext, step: Callable[[AccessRequests], AccessRequest]) -> AccessRequest:
    """Run one step of the policies code in one transaction that holds the write lock from the
    start (in a worker thread)."""
    base = _store(ctx)
    with base.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # A read transaction upgraded to a write later fails at once (SQLITE_BUSY) under WAL
            # when the access log commits in between: take the write lock first.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            store = copy.copy(base)
            store.engine = _InTransaction(conn)  # type: ignore[assignment]
            result = step(store)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return result


# -- errors and records ----------------------------------------------------------------------------

NO_SUCH_REQUEST = "No such access request."
# PolicyError messages from policies.grants that mean "not you" rather than "bad input".
_FORBIDDEN_MARKERS = ("not an owner", "by its requester", "may not revoke", "unknown user")


def _governed(exc: PolicyError) -> GovernedError:
    message = str(exc)
    if any(marker in message for marker in _FORBIDDEN_MARKERS):
        return GovernedError(message, FORBIDDEN)
    if message.startswith("no access request #"):
        return GovernedError(NO_SUCH_REQUEST, BAD_USER_INPUT)
    return GovernedError(message, BAD_USER_INPUT)


def _touch(
    ctx: RequestContext,
    verb: str,
    product: str | None,
    allowed: bool,
    reason: str,
    rule: str | None,
    code: str | None,
) -> None:
    """The gateway's record of the request: one touch, so it replaces the generic `query` record."""
    decision = Decision(allowed, ctx.subject, product or "", verb, rule, reason, ctx.policy.version)
    ctx.touch(Touch(product=product, action=verb, decision=decision, error_code=code))


def _refused(ctx: RequestContext, verb: str, product: str | None, error: GovernedError) -> None:
    _touch(ctx, verb, product, False, str(error), None, error.code)


async def _run(
    ctx: RequestContext,
    verb: str,
    product: str | None,
    step: Callable[[AccessRequests], AccessRequest],
    describe: Callable[[AccessRequest], tuple[str, str]],
    reload_policy: bool = False,
) -> AccessRequestInfo:
    ctx.cacheable = False
    try:
        try:
            result = await anyio.to_thread.run_sync(_transact, ctx, step)
        except PolicyError as exc:
            raise _governed(exc) from None
    except GovernedError as exc:
        _refused(ctx, verb, product, exc)
        raise
    rule, reason = describe(result)
    _touch(ctx, verb, result.product, True, f"access request #{result.id}: {reason}", rule, None)
    if reload_policy:
        # This process decides with the new grants from the next request on.
        await anyio.to_thread.run_sync(ctx.policy.refresh_if_changed)
    return AccessRequestInfo.of(result)


def _target(ctx: RequestContext, name: str) -> ProductSpec:
    """The product a request is for. A product the caller may not discover and one that does not
    exist are requested the same way (the department's owners see the request either way)."""
    entry = ctx.state.entries.get(name)
    if entry is not None:
        return entry.spec
    department, _, product = name.partition(".")
    if not (is_name(department) and is_name(product)) or "." in product or department == GLOBAL_DOMAIN:
        raise bad_input("`product` must be a product name: `department.product`.")
    return ProductSpec(
        department=department,
        product=product,
        classification="restricted",
        owner="",
        description="",
        columns=(),
    )


def _owned_departments(ctx: RequestContext) -> tuple[set[str], bool]:
    owning = {name for name, role in ctx.policy.directory.roles.items() if role.owns}
    roles = ctx.policy.roles(ctx.subject)
    departments = {d for r, d in roles if r in owning}
    sees_all = any(d == GLOBAL_DOMAIN for _, d in roles)  # auditors review every request
    return departments, sees_all


# -- schema ----------------------------------------------------------------------------------------


@strawberry.type
class AccessRequestQuery:
    @strawberry.field(
        description="Your own access requests, and those of the departments you own (to decide), "
        "oldest first; optionally only those in one state."
    )
    async def access_requests(
        self, info: strawberry.Info, status: AccessRequestState | None = None
    ) -> list[AccessRequestInfo]:
        ctx: RequestContext = info.context
        ctx.cacheable = False  # requests change state with every decision and with the clock
        store = _store(ctx)
        departments, sees_all = _owned_departments(ctx)

        def load() -> list[AccessRequest]:
            if sees_all:
                return store.list()
            mine = {r.id: r for r in store.list(subject=ctx.subject)}
            for department in sorted(departments):
                mine.update((r.id, r) for r in store.list(department=department))
            return [mine[i] for i in sorted(mine)]

        rows = await anyio.to_thread.run_sync(load)
        now = dt.datetime.now(dt.UTC)
        return [AccessRequestInfo.of(r) for r in rows if status is None or r.state(now) == status.value]


@strawberry.type
class AccessMutation:
    @strawberry.mutation(
        description="Ask for `action` on `product` for `days`, with a purpose. An owner of the "
        "product's department (never you) decides."
    )
    async def request_access(
        self,
        info: strawberry.Info,
        product: str,
        purpose: str,
        action: AccessAction = AccessAction.READ,  # type: ignore[valid-type]  # an enum built at import time
        days: int = 30,
    ) -> AccessRequestInfo | None:
        ctx: RequestContext = info.context
        ctx.cacheable = False
        try:
            spec = _target(ctx, product)
        except GovernedError as exc:
            _refused(ctx, "request", None, exc)
            raise
        subject, wanted = ctx.subject, action.value  # type: ignore[attr-defined]  # an enum built at import time
        return await _run(
            ctx,
            "request",
            spec.name,
            lambda store: store.request(subject, spec, wanted, purpose, days),
            lambda r: (
                "policies/grants.py: any staff member may request",
                f"{r.subject} requests {r.action} on {r.product} for {r.days} days",
            ),
        )

    @strawberry.mutation(
        description="Approve a pending request (owners of its department only, never the requester)."
    )
    async def approve_access_request(
        self, info: strawberry.Info, id: int, note: str = ""
    ) -> AccessRequestInfo | None:
        ctx: RequestContext = info.context
        approver = ctx.subject
        return await _run(
            ctx,
            "approve",
            await _known_product(ctx, "approve", id),
            lambda store: store.approve(id, approver, note),
            lambda r: (
                f"policies/grants.py: owner of {r.department}, not the requester",
                f"{approver} approved {r.action} on {r.product} for {r.subject} "
                f"until {r.expires_at:%Y-%m-%d %H:%M} UTC",
            ),
            reload_policy=True,
        )

    @strawberry.mutation(description="Reject a pending request, saying why (owners of its department).")
    async def reject_access_request(
        self, info: strawberry.Info, id: int, reason: str
    ) -> AccessRequestInfo | None:
        ctx: RequestContext = info.context
        approver = ctx.subject
        product = await _known_product(ctx, "reject", id)
        if not reason.strip():
            ctx.cacheable = False
            error = bad_input("A rejection needs a reason.")
            _refused(ctx, "reject", product, error)
            raise error
        return await _run(
            ctx,
            "reject",
            product,
            lambda store: store.reject(id, approver, reason.strip()),
            lambda r: (
                f"policies/grants.py: owner of {r.department}, not the requester",
                f"{approver} rejected {r.action} on {r.product} for {r.subject}",
            ),
        )

    @strawberry.mutation(
        description="End a pending request or an active grant now (an owner of its department, "
        "or the grantee giving it up)."
    )
    async def revoke_access(
        self, info: strawberry.Info, id: int, reason: str = ""
    ) -> AccessRequestInfo | None:
        ctx: RequestContext = info.context
        actor = ctx.subject
        return await _run(
            ctx,
            "revoke",
            await _known_product(ctx, "revoke", id),
            lambda store: store.revoke(id, actor, reason),
            lambda r: (
                f"policies/grants.py: owner of {r.department} or the grantee",
                f"{actor} revoked {r.action} on {r.product} for {r.subject}",
            ),
            reload_policy=True,
        )


def _may_know(ctx: RequestContext, request: AccessRequest) -> bool:
    """Who may know a request exists: its requester, an owner of its department, an auditor (the
    same people `accessRequests` lists it to)."""
    departments, sees_all = _owned_departments(ctx)
    return sees_all or request.subject == ctx.subject or request.department in departments


async def _known_product(ctx: RequestContext, verb: str, request_id: int) -> str:
    """The product of request `request_id` if the caller may know of it; to anyone else a request
    that exists is refused exactly as one that does not (no department, state or requester leaks).
    The refusal is recorded (with the real product, for auditors)."""
    store = _store(ctx)

    def get() -> AccessRequest | None:
        try:
            return store.get(request_id)
        except PolicyError:
            return None

    found = await anyio.to_thread.run_sync(get)
    if found is None or not _may_know(ctx, found):
        ctx.cacheable = False
        error = GovernedError(NO_SUCH_REQUEST, BAD_USER_INPUT)
        _refused(ctx, verb, found.product if found else None, error)
        raise error
    return found.product


__all__ = ["AccessMutation", "AccessRequestInfo", "AccessRequestQuery", "AccessRequestState"]
