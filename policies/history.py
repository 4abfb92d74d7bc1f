"""Rights as of any date, rebuilt from the access log, and the change that made each one.

The state at time T (an ISO-8601 instant; records stamped at or before T count):

- **policy**: the files named by the newest `policy_version` record at or before T (what a serving
  gateway had loaded), read from `policy_texts` and checked against the digest the chain names;
- **grants**: every access request the chain shows approved at or before T, not revoked at or
  before T, and not expired at T. Each grant's row in the grant store must still say what its
  chained `approve` record said (subject, action, product, expiry): a grant edited afterwards is
  an error, not an answer.

Nothing recorded before T, or files missing or altered, is a `HistoryError` (fail closed: no
answer rather than a wrong one). A decision's *change* is the newest chained event (a policy
loaded, a grant approved, revoked or expired) at or before T after which the decision — allowed,
masks, row filter — differs from the one just before it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from meshcore.accesslog import AccessLog, utc_timestamp
from meshcore.products import ProductSpec
from policies import grants as grants_mod
from policies import versions
from policies.decision import Decision
from policies.engine import Inputs, PolicyEngine


class HistoryError(ValueError):
    """The log cannot tell what was in force at the time asked (the message says why)."""


class NotRecorded(HistoryError):
    """No policy was recorded as loaded at or before the time asked (a read of that time then
    falls back to today's rights; an explanation has no answer)."""


@dataclass(frozen=True)
class Change:
    """A chained event that changed what was in force."""

    seq: int
    ts: str
    description: str

    @property
    def at(self) -> datetime:
        return _parse(self.ts)


@dataclass(frozen=True)
class PolicyAt:
    """What was in force at `at`: a frozen engine, the policy record, the grants."""

    at: datetime
    engine: PolicyEngine
    policy: versions.PolicyEvent
    grants: tuple[int, ...]  # ids of the access requests in force


# Frozen engines are immutable and cost a Casbin build: shared by every History in the process.
_ENGINES: OrderedDict[tuple[str, str, tuple[int, ...]], PolicyEngine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()
MAX_ENGINES = 32


def _frozen_engine(
    key: tuple[str, str, tuple[int, ...]], build: Callable[[], Inputs], at: datetime
) -> PolicyEngine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            _ENGINES.move_to_end(key)
            return engine
    engine = PolicyEngine.frozen(build(), at)
    with _ENGINES_LOCK:
        _ENGINES[key] = engine
        while len(_ENGINES) > MAX_ENGINES:
            _ENGINES.popitem(last=False)
    return engine


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _shape(d: Decision) -> tuple[object, ...]:
    return d.allowed, tuple(sorted(d.masks.items())), d.row_filter


class History:
    """Reads the chained policy and grant records once; rebuilds states on demand (cached)."""

    def __init__(self, log: AccessLog, metadata: Engine) -> None:
        self.log = log
        self.metadata = metadata
        self.policies = [e for e in versions.events(log) if e.kind == versions.LOADED]
        grant_records = log.of_actions(("approve", "revoke"))
        self._approved = {self._request_id(r): r for r in grant_records if r["action"] == "approve"}
        self._revoked = {self._request_id(r): r for r in grant_records if r["action"] == "revoke"}
        self._requests = self._load_requests(self._approved)

    @staticmethod
    def _request_id(record: dict[str, Any]) -> int:
        return int(str(record["rule"]).removeprefix("access request #"))

    def _load_requests(self, approved: dict[int, dict[str, Any]]) -> dict[int, grants_mod.AccessRequest]:
        """The grant store's rows of the chained approvals, each checked against its record."""
        table = grants_mod.access_requests
        with self.metadata.connect() as conn:
            rows = conn.execute(select(table).where(table.c.id.in_(list(approved)))).all() if approved else []
        requests = {r.id: grants_mod.AccessRequest.from_row(r) for r in rows}
        for request_id, record in approved.items():
            request = requests.get(request_id)
            if request is None or not _matches(request, record):
                raise HistoryError(
                    f"access request #{request_id} in the grant store no longer matches its approval "
                    f"in the access log (seq {record['seq']}): it was changed or removed afterwards"
                )
        return requests

    # -- states ------------------------------------------------------------------------------------

    def policy_event_at(self, at: datetime) -> versions.PolicyEvent:
        stamp = utc_timestamp(at)
        in_force = [e for e in self.policies if e.ts <= stamp]
        if not in_force:
            first = f"the first is at {self.policies[0].ts}" if self.policies else "none is recorded"
            raise NotRecorded(f"no policy was recorded as loaded at or before {stamp} ({first})")
        return in_force[-1]

    def grants_at(self, at: datetime) -> list[grants_mod.AccessRequest]:
        stamp = utc_timestamp(at)
        active = []
        for request_id, record in sorted(self._approved.items()):
            revoked = self._revoked.get(request_id)
            request = self._requests[request_id]
            if record["ts"] > stamp or (revoked is not None and revoked["ts"] <= stamp):
                continue
            if request.expires_at is not None and request.expires_at > at.astimezone(UTC):
                active.append(request)
        return active

    def at(self, when: datetime) -> PolicyAt:
        """The frozen engine of what was in force at `when`."""
        policy = self.policy_event_at(when)
        grants = self.grants_at(when)
        key = (str(self.metadata.url), policy.digest, tuple(g.id for g in grants))  # one store's grants

        def inputs() -> Inputs:
            files = versions.files_of(self.metadata, policy.digest)
            if files is None:
                raise HistoryError(
                    f"the policy files of access log seq {policy.seq} ({policy.digest[:16]}) are missing "
                    "from policy_texts or no longer match their chained digest"
                )
            return Inputs(files.model, files.policy, files.users, grants=tuple(grants))

        engine = _frozen_engine(key, inputs, when)
        return PolicyAt(when, engine, policy, key[2])

    # -- changes -----------------------------------------------------------------------------------

    def changes(self, subject: str, product: str, until: datetime) -> list[Change]:
        """Every event up to `until` that can change `subject`'s rights on `product`, oldest first."""
        stamp = utc_timestamp(until)
        found = [
            Change(e.seq, e.ts, f"policy loaded: {e.reason.removeprefix('policy loaded: ')}")
            for e in self.policies
        ]
        for request_id, record in self._approved.items():
            request = self._requests[request_id]
            if (request.subject, request.product) != (subject, product):
                continue
            found.append(
                Change(record["seq"], record["ts"], f"{record['reason']} (approved by {record['subject']})")
            )
            revoked = self._revoked.get(request_id)
            if revoked is not None:
                found.append(
                    Change(
                        revoked["seq"],
                        revoked["ts"],
                        f"{revoked['reason']} (revoked by {revoked['subject']})",
                    )
                )
            elif request.expires_at is not None:
                found.append(
                    Change(0, utc_timestamp(request.expires_at), f"access request #{request_id} expired")
                )
        return sorted((c for c in found if c.ts <= stamp), key=lambda c: (c.ts, c.seq))

    def decide(
        self, subject: str, product: ProductSpec, action: str, at: datetime
    ) -> tuple[Decision, Change | None]:
        """The decision in force at `at`, and the change that made it what it was (None: it has
        been so since the first recorded policy)."""
        decision = self.at(at).engine.decide(subject, product, action)
        before: tuple[object, ...] | None = None
        made: Change | None = None
        for change in self.changes(subject, product.name, at):
            try:
                shape = _shape(self.at(change.at).engine.decide(subject, product, action))
            except HistoryError:
                continue  # before the first recorded policy: nothing to compare with
            if before is not None and shape != before:
                made = change
            before = shape
        return decision, made


def _matches(request: grants_mod.AccessRequest, record: dict[str, Any]) -> bool:
    """Does the store's row still say what the chained approval said (who, what, until when)?"""
    said = grants_mod.audit_record(request, record["subject"], "approve", []).reason + "; valid until "
    if not record["reason"].startswith(said) or request.expires_at is None:
        return False
    try:
        until = datetime.strptime(record["reason"].removeprefix(said), "%Y-%m-%d %H:%M UTC").replace(
            tzinfo=UTC
        )
    except ValueError:
        return False
    return until == request.expires_at.astimezone(UTC).replace(second=0, microsecond=0)


def explain_lines(
    history: History, subject: str, product: ProductSpec, action: str, at: datetime
) -> list[str]:
    """`civicmesh policy explain --at`: the decision then, what was in force, what changed it."""
    from policies.explain import explain

    state = history.at(at)
    _, change = history.decide(subject, product, action, at)
    lines = [f"as of {utc_timestamp(at)}"]
    lines += [
        line for line in explain(state.engine, subject, product, action) if not line.startswith("  change:")
    ]
    lines.append(f"  policy in force: loaded at {state.policy.ts} (access log seq {state.policy.seq})")
    if state.grants:
        lines.append("  grants in force: " + ", ".join(f"access request #{g}" for g in state.grants))
    if change is None:
        lines.append("  changed by: nothing since the first recorded policy")
    else:
        where = f"access log seq {change.seq}" if change.seq else "expiry"
        lines.append(f"  changed by: {where} at {change.ts}: {change.description}")
    return lines


def who_could(history: History, product: ProductSpec, action: str, at: datetime) -> Iterable[Decision]:
    engine = history.at(at).engine
    return [d for u in engine.users() if (d := engine.decide(u.name, product, action)).allowed]
