"""The one decision function: subject x product x action -> Decision (rights, masks, row scope).

Everything loaded (model, policy lines, directory, active grants) lives in one immutable `_State`.
A reload builds a complete new state and swaps the reference, so a concurrent `decide()` sees the
old or the new policy, never a half-built one; a state that fails to build — including any finding
of the lint rules (`policies/lint.py`, the same rules `civicmesh policy check` applies) — is never
swapped in: the last good policy stays, the refusal is logged, kept in `rejected` (readiness), and,
by a serving engine, recorded in the access log (`policies/versions.py`).
Casbin is slow and its FastPolicy filter is shared mutable state, so Casbin runs under the state's
lock and only on a cache miss: decisions are cached per state (= policy version).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import casbin
from casbin.model import FastModel
from casbin.model.policy_fast import fast_policy_filter
from sqlalchemy import Engine

from meshcore.accesslog import AccessLog
from meshcore.products import CLASSIFICATIONS, ProductSpec
from meshcore.settings import Settings
from meshcore.store import utcnow
from policies import grants as grants_mod
from policies import versions
from policies.decision import ACTIONS, SYSTEM_ACTIONS, Decision
from policies.directory import Directory, User, parse_directory
from policies.lint import MODEL_FILE, POLICY_FILE, USERS_FILE, lint_texts, owned_departments
from policies.names import GLOBAL_DOMAIN, PolicyError, is_name
from policies.policyfile import Rule, parse_policy
from policies.rules import ROW_ACTIONS, builtin_allow, denial_reason, row_filter
from policies.versions import PolicyFiles

log = logging.getLogger(__name__)
REQUEST_TOKENS = ("r_sub", "r_dom", "r_obj", "r_act", "r_cls")
POLICY_TOKENS = ("p_sub", "p_dom", "p_obj", "p_act")
# FastEnforcer indexes p lines by (domain, action): r and p share positions 1 and 3.
CACHE_KEY_ORDER = (1, 3)
MAX_CACHED = 100_000
# One lock for every Casbin call in the process: FastPolicy's filter is shared mutable state, and
# CPython 3.11's ast.parse (simpleeval, used per enforce) is not thread-safe: concurrent parses raised
# "SystemError: AST constructor recursion depth mismatch" in test_concurrent_decisions_during_reloads.
_CASBIN_LOCK = threading.Lock()

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Inputs:
    model: str
    policy: str
    users: str
    grants: tuple[grants_mod.AccessRequest, ...]
    grant_error: str | None = None

    def files(self) -> PolicyFiles:
        return PolicyFiles(self.model, self.policy, self.users)

    def files_digest(self) -> str:
        """The policy files alone (no grants): what a `policy_version` access-log record names."""
        return self.files().digest()

    def digest(self) -> str:
        h = hashlib.sha256(self.files_digest().encode())
        for g in self.grants:
            h.update(f"{g.id}|{g.subject}|{g.product}|{g.department}|{g.action}|{g.expires_at}\n".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class _State:
    version: str
    inputs: Inputs
    directory: Directory
    rules: tuple[Rule, ...]
    enforcer: casbin.FastEnforcer
    rule_source: dict[tuple[str, ...], tuple[str, str]]  # p fields -> (rule text, where)
    grants: dict[tuple[str, ...], grants_mod.AccessRequest]
    roles: dict[str, tuple[tuple[str, str], ...]]
    next_expiry: datetime | None
    owned: frozenset[str]  # departments with an owner (a reload may not lose one)
    cache: dict[tuple[Any, ...], Decision] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    """Policy files a reload refused: their digest, why, and when (the last good policy stays)."""

    files: str
    reason: str
    at: datetime


def _new_enforcer(model_text: str) -> casbin.FastEnforcer:
    model = FastModel(CACHE_KEY_ORDER)
    model.load_model_from_text(model_text)  # its matcher passed lint_model (no eval, no patterns)
    enforcer = casbin.FastEnforcer(model, None, cache_key_order=CACHE_KEY_ORDER)
    r_tokens = tuple(enforcer.model["r"]["r"].tokens)
    p_tokens = tuple(enforcer.model["p"]["p"].tokens)
    if r_tokens != REQUEST_TOKENS or p_tokens != POLICY_TOKENS:
        raise PolicyError(f"{MODEL_FILE}: expected r = sub, dom, obj, act, cls and p = sub, dom, obj, act")
    return enforcer


def _grant_lines(
    grants: tuple[grants_mod.AccessRequest, ...],
    directory: Directory,
    source: dict[tuple[str, ...], tuple[str, str]],
) -> dict[tuple[str, ...], grants_mod.AccessRequest]:
    """The policy lines (subject, department, product, action) active grants add, each with the
    grant behind it; adds each line's source ("access request #N") to `source`."""
    granted: dict[tuple[str, ...], grants_mod.AccessRequest] = {}
    for g in grants:
        fields = (g.subject, g.department, g.product, g.action)
        # Re-validate what comes back from the store: a bad name must never reach Casbin.
        if not all(is_name(f) for f in fields) or g.subject not in directory.users:
            continue
        if g.action not in ACTIONS or g.department == GLOBAL_DOMAIN:
            continue
        if not g.product.startswith(f"{g.department}."):
            continue
        granted.setdefault(fields, g)
        source.setdefault(fields, ("p, " + ", ".join(fields), f"access request #{g.id}"))
        if g.action != "discover":
            # A grant to use a product implies knowing it exists (else a read grant on a
            # confidential or restricted product could never be used: surfaces check discover first).
            implied = (g.subject, g.department, g.product, "discover")
            granted.setdefault(implied, g)
            source.setdefault(implied, ("p, " + ", ".join(implied), f"access request #{g.id}"))
    return granted


def _build_state(
    inputs: Inputs, previously_owned: frozenset[str] = frozenset(), *, lint: bool = True
) -> _State:
    """Lint, then build the Casbin enforcer. Raises PolicyError naming every finding (up to 5);
    never half-succeeds. `lint=False` only rebuilds a policy that was in force (history): it
    passed the rules of its day, and names are still validated while parsing."""
    problems = lint_texts(inputs.files().texts(), previously_owned=previously_owned) if lint else []
    if problems:
        more = f" (+{len(problems) - 5} more: civicmesh policy check)" if len(problems) > 5 else ""
        raise PolicyError("; ".join(str(p) for p in problems[:5]) + more)
    directory = parse_directory(inputs.users, USERS_FILE)
    rules, _ = parse_policy(inputs.policy, POLICY_FILE)
    roles: dict[str, list[tuple[str, str]]] = {}
    for rule in rules:
        if rule.ptype == "g":
            user, role, dom = rule.fields
            roles.setdefault(user, []).append((role, dom))
    with _CASBIN_LOCK:
        enforcer = _new_enforcer(inputs.model)
    source: dict[tuple[str, ...], tuple[str, str]] = {}
    for rule in rules:
        if rule.ptype == "p":
            source.setdefault(rule.fields, (rule.text, rule.where))
    granted = _grant_lines(inputs.grants, directory, source)
    p_lines = [list(f) for f in source]
    g_lines = [list(r.fields) for r in rules if r.ptype == "g"]
    with _CASBIN_LOCK:
        if p_lines:
            enforcer.add_named_policies("p", p_lines)
        if g_lines:
            enforcer.add_named_grouping_policies("g", list(map(list, dict.fromkeys(map(tuple, g_lines)))))
    expiries = [g.expires_at for g in granted.values() if g.expires_at is not None]
    return _State(
        version=inputs.digest()[:16],
        inputs=inputs,
        directory=directory,
        rules=tuple(rules),
        enforcer=enforcer,
        rule_source=source,
        grants=granted,
        roles={u: tuple(dict.fromkeys(r)) for u, r in roles.items()},
        next_expiry=min(expiries) if expiries else None,
        owned=frozenset(owned_departments(rules, directory)),
    )


class PolicyEngine:
    """Load once, decide many times; `refresh_if_changed` (also run lazily by `decide`) reloads.

    `audit_log`: where grant expiries are logged (none: nothing is written). `serving=True` (the
    gateway's engine): each policy loaded and each reload refused is also recorded there. `inputs`:
    a frozen engine over given files and grants (a past policy, see `policies/history.py`)."""

    def __init__(
        self,
        policies_dir: Path,
        metadata: Engine | None = None,
        *,
        check_interval: float | None = 2.0,
        clock: Clock = utcnow,
        audit_log: AccessLog | None = None,
        serving: bool = False,
        inputs: Inputs | None = None,
    ) -> None:
        self.policies_dir = Path(policies_dir)
        self.metadata = metadata
        self.check_interval = None if inputs is not None else check_interval
        self.clock = clock
        self.last_error: str | None = None
        self.rejected: Rejection | None = None
        self._refresh_lock = threading.Lock()
        self._frozen = inputs is not None
        self.audit_log = audit_log
        self.serving = serving and audit_log is not None
        if metadata is not None and not self._frozen:
            grants_mod.ensure_schema(metadata)
        self._state = _build_state(inputs, lint=False) if inputs else self._first_state()
        self._last_check = time.monotonic()
        self._record_version(None, self._state)

    @classmethod
    def load(cls, settings: Settings, **kwargs: Any) -> PolicyEngine:
        """The configured policy files and the store's grants. Raises PolicyError or OSError."""
        from meshcore.store import get_engine

        return cls(settings.policies_dir, get_engine(settings.metadata_url), **kwargs)

    @classmethod
    def frozen(cls, inputs: Inputs, at: datetime) -> PolicyEngine:
        """Decisions under exactly `inputs` as of `at` (never reloads, never writes)."""
        return cls(Path("."), None, clock=lambda: at, inputs=inputs)

    def _first_state(self) -> _State:
        """The files on disk under the rules a reload applies: an engine with an access log (the
        gateway's, and the CLI's that change grants) also keeps the departments owned under the
        last policy the log records as loaded, so no surface accepts what a serving reload would
        refuse. A refusal is recorded (serving), then raised."""
        inputs = self._read_inputs(None)
        owned = versions.served_owned(self.audit_log) if self.audit_log is not None else frozenset()
        try:
            return _build_state(inputs, owned)
        except Exception as exc:
            self._reject(inputs, exc, self._last_recorded_version() if self.serving else None)
            raise

    # -- the audit trail of the policy itself ------------------------------------------------------

    def _record_version(self, old: _State | None, new: _State, detail: str = "") -> None:
        """A serving engine records the policy files it loads (once across processes, with the
        lines that changed). Never raises: a policy that loads is used even if the log is down
        (requests then fail closed on their own records)."""
        if not self.serving or self.audit_log is None:
            return
        if old is not None and old.inputs.files_digest() == new.inputs.files_digest():
            return  # only grants changed: those are logged as grant changes
        try:
            versions.record(
                self.audit_log,
                versions.LOADED,
                new.inputs.files(),
                version=new.version,
                previous_version=old.version if old else self._last_recorded_version(),
                detail=detail,
            )
        except Exception as exc:
            self.last_error = f"policy version not logged: {type(exc).__name__}: {exc}"

    def _last_recorded_version(self) -> str | None:
        assert self.audit_log is not None
        with self.audit_log.engine.connect() as conn:
            last = self.audit_log.latest(conn, versions.LOADED)
        return last["policy_version"] if last else None

    def _reject(self, inputs: Inputs, exc: Exception, serving: str | None) -> None:
        """Keep the last good policy (version `serving`); say so once per refused set of files: in
        the process log, in `rejected` (readiness, `policy status`) and, serving, in the access log."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        digest = inputs.files_digest()
        if self.rejected is not None and self.rejected.files == digest:
            return
        self.rejected = Rejection(digest, str(exc), self.clock())
        log.error("policy reload refused (files %s): %s; still serving version %s", digest[:16], exc, serving)
        if not self.serving or self.audit_log is None:
            return
        try:
            versions.record(
                self.audit_log,
                versions.REJECTED,
                inputs.files(),
                version=inputs.digest()[:16],
                previous_version=serving,
                detail=str(exc),
            )
        except Exception as record_exc:
            self.last_error += f"; the refusal was not logged: {type(record_exc).__name__}: {record_exc}"

    def status(self) -> tuple[bool, str]:
        """(ok, detail) for readiness: not ok while the files on disk are refused. Looks at the
        files first (at most once per check interval), so an idle gateway reports a refusal too."""
        self._maybe_refresh()
        if self.rejected is not None:
            r = self.rejected
            return False, (
                f"policy files {r.files[:16]} refused at {r.at:%Y-%m-%dT%H:%M:%SZ}: {r.reason}; "
                f"serving the last good version {self.version}"
            )
        return True, f"serving policy version {self.version}"

    def _record_expiries(self) -> None:
        if self.audit_log is None or self.metadata is None:
            return
        try:
            grants_mod.record_expiries(self.metadata, self.audit_log, self.clock())
        except Exception as exc:
            self.last_error = f"grant expiries not logged: {type(exc).__name__}: {exc}"

    @classmethod
    def from_dir(cls, policies_dir: Path, **kwargs: Any) -> PolicyEngine:
        """Files only, no runtime grants (offline tooling: lint, diff, explain from a branch)."""
        return cls(policies_dir, None, check_interval=None, **kwargs)

    # -- loading --------------------------------------------------------------------------------

    def _read_files(self) -> tuple[str, str, str]:
        model, policy, users = (
            (self.policies_dir / n).read_text() for n in (MODEL_FILE, POLICY_FILE, USERS_FILE)
        )
        return model, policy, users

    def _read_grants(
        self, previous: _State | None
    ) -> tuple[tuple[grants_mod.AccessRequest, ...], str | None]:
        if self.metadata is None:
            return (), None
        now = self.clock()
        try:
            return tuple(grants_mod.active_grants(self.metadata, now)), None
        except Exception as exc:  # store down: keep the grants we had, minus the expired ones
            if previous is None:
                raise
            kept = (g for g in previous.inputs.grants if g.expires_at is not None and g.expires_at > now)
            return tuple(kept), f"grants not refreshed: {type(exc).__name__}: {exc}"

    def _read_inputs(self, previous: _State | None) -> Inputs:
        grants, error = self._read_grants(previous)
        return Inputs(*self._read_files(), grants=grants, grant_error=error)

    def refresh_if_changed(self, *, force: bool = False) -> bool:
        """Reload if files or active grants changed. True if a new state was swapped in; on failure
        the last good state stays and `last_error` (and `rejected`, for refused files) says why."""
        if self._frozen:
            return False
        with self._refresh_lock:
            return self._refresh(force)

    def _refresh(self, force: bool) -> bool:
        self._last_check = time.monotonic()
        current = self._state
        grants, grant_error = self._read_grants(current)
        try:
            inputs = Inputs(*self._read_files(), grants=grants, grant_error=grant_error)
        except OSError as exc:  # a file vanished or cannot be read: refuse like a bad file
            inputs = replace(current.inputs, model="", policy="", users="", grants=grants)
            self._reject(inputs, PolicyError(f"cannot read the policy files: {exc}"), current.version)
            return self._keep_files(current, grants, grant_error)
        if not force and inputs.digest() == current.inputs.digest():
            self.last_error = grant_error
            if self.rejected is not None:  # the refused files were put back as they were
                self.rejected = None
                self._record_version(None, current, " (the files are back after a refused reload)")
            return False
        refused = self.rejected is not None and self.rejected.files == inputs.files_digest()
        if not refused or force:
            try:
                self._state = _build_state(inputs, current.owned)  # one assignment: atomic for readers
            except Exception as exc:
                self._reject(inputs, exc, current.version)
            else:
                self.rejected, self.last_error = None, grant_error
                self._record_version(current, self._state)
                if grants != current.inputs.grants:
                    self._record_expiries()
                return True
        return self._keep_files(current, grants, grant_error)

    def _keep_files(
        self, current: _State, grants: tuple[grants_mod.AccessRequest, ...], grant_error: str | None
    ) -> bool:
        """Keep the last good files, but never let refused files keep an expired or revoked grant
        alive: rebuild the last good policy with the current grants."""
        if grants == current.inputs.grants:
            return False
        self._state = _build_state(
            replace(current.inputs, grants=grants, grant_error=grant_error), current.owned
        )
        self._record_expiries()
        return True

    def _maybe_refresh(self) -> None:
        if self._frozen:
            return
        state = self._state
        expired = state.next_expiry is not None and self.clock() >= state.next_expiry
        if not expired:
            if self.check_interval is None or time.monotonic() - self._last_check < self.check_interval:
                return
            # One thread refreshes; the others keep deciding on the current state meanwhile.
            if not self._refresh_lock.acquire(blocking=False):
                return
        else:
            # A grant has expired: nobody decides on the old state until it is rebuilt.
            self._refresh_lock.acquire()
        try:
            if self._state is state:
                self._refresh(force=False)
        finally:
            self._refresh_lock.release()

    # -- queries --------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self._state.version

    def files(self) -> PolicyFiles:
        """The policy files in force (the last good ones)."""
        return self._state.inputs.files()

    @property
    def directory(self) -> Directory:
        return self._state.directory

    def user(self, subject: str) -> User | None:
        return self._state.directory.users.get(subject) if isinstance(subject, str) else None

    def roles(self, subject: str) -> list[tuple[str, str]]:
        return list(self._state.roles.get(subject, ()))

    def users(self) -> list[User]:
        return list(self._state.directory.users.values())

    def rules(self) -> tuple[Rule, ...]:
        return self._state.rules

    def grant_for(self, decision: Decision) -> grants_mod.AccessRequest | None:
        """The runtime grant behind an allowed decision, if one decided it."""
        prefix = "access request #"
        if not decision.source or not decision.source.startswith(prefix):
            return None
        request_id = decision.source.removeprefix(prefix)
        return next((g for g in self._state.grants.values() if str(g.id) == request_id), None)

    # -- deciding -------------------------------------------------------------------------------

    def decide(self, subject: str, product: ProductSpec | None, action: str) -> Decision:
        """The decision for `subject` doing `action` on `product`. The domain comes from the product,
        never from the caller. Default deny."""
        self._maybe_refresh()
        state = self._state
        try:
            key = (subject, product, action)
            cached = state.cache.get(key)
        except TypeError:  # unhashable junk from a caller: decide, do not cache
            return self._decide(state, subject, product, action)
        if cached is None:
            cached = self._decide(state, subject, product, action)
            if len(state.cache) >= MAX_CACHED:
                state.cache.clear()
            state.cache[key] = cached
        return cached

    def decide_system(self, subject: str, action: str, obj: str) -> Decision:
        """The decision for `subject` holding a right over the mesh itself (`SYSTEM_ACTIONS`):
        `produce_lineage` on `obj` = the OpenLineage job namespace its events are written under.

        Only policy lines in the `global` domain grant these (`p, ROLE, global, NAMESPACE, action`,
        or `*`/`**` for any namespace); no built-in rule does. Default deny; a subject that is not
        in the directory is denied. Cached per policy version like `decide`."""
        self._maybe_refresh()
        state = self._state
        key = ("system", subject, action, obj)
        cached = state.cache.get(key) if all(isinstance(k, str) for k in key) else None
        if cached is None:
            cached = self._decide_system(state, subject, action, obj)
            if isinstance(subject, str) and isinstance(obj, str):
                if len(state.cache) >= MAX_CACHED:
                    state.cache.clear()
                state.cache[key] = cached
        return cached

    def _decide_system(self, state: _State, subject: Any, action: Any, obj: Any) -> Decision:
        if action not in SYSTEM_ACTIONS:
            return self._deny(state, subject, obj, action, f"unknown system action {action!r}")
        if not isinstance(obj, str) or not obj or len(obj) > 200:
            return self._deny(state, subject, obj, action, f"invalid object {obj!r}")
        user = state.directory.users.get(subject) if isinstance(subject, str) else None
        if user is None or not is_name(subject):
            return self._deny(state, subject, obj, action, f"unknown subject {subject!r}")
        policy = state.enforcer.model.model["p"]["p"].policy
        with _CASBIN_LOCK, fast_policy_filter(policy, GLOBAL_DOMAIN, action):
            ok, rule = state.enforcer.enforce_ex(user.name, GLOBAL_DOMAIN, obj, action, "")
        if not ok:
            return self._deny(
                state, subject, obj, action, f"no rule allows {user.name} to {action} in {obj!r}"
            )
        text, where = state.rule_source.get(tuple(rule), ("p, " + ", ".join(rule), "?"))
        sub = rule[0]
        holder = "is granted" if sub == user.name else f"holds role {sub}, which may"
        reason = f"{user.name} {holder} {action} in {obj!r} by policy"
        return Decision(True, user.name, obj, action, text, reason, state.version, source=where)

    def _casbin(self, state: _State, subject: str, product: ProductSpec, action: str) -> tuple[str, ...]:
        """The matching p line (product domain first, then the global domain), or ()."""
        policy = state.enforcer.model.model["p"]["p"].policy
        for domain in (product.department, GLOBAL_DOMAIN):
            with _CASBIN_LOCK, fast_policy_filter(policy, domain, action):
                ok, rule = state.enforcer.enforce_ex(
                    subject, domain, product.name, action, product.classification
                )
            if ok:
                return tuple(rule)
        return ()

    def _allow(
        self, state: _State, user: User, roles: list[tuple[str, str]], product: ProductSpec, action: str
    ) -> tuple[str, str, str] | None:
        """(rule, reason, source) of the first rule that allows, or None."""
        matched = self._casbin(state, user.name, product, action)
        if matched:
            text, where = state.rule_source.get(matched, ("p, " + ", ".join(matched), "?"))
            sub, dom = matched[0], matched[1]
            grant = state.grants.get(matched) if where.startswith("access request") else None
            if grant is not None:
                reason = (
                    f"{user.name} holds a grant to {action} {product.name} approved by "
                    f"{grant.decided_by}, valid until {grant.expires_at:%Y-%m-%d %H:%M} UTC"
                )
            elif sub == user.name:
                reason = f"{user.name} is granted {action} on {product.name} by policy"
            else:
                reason = f"{user.name} holds role {sub} in {dom}, which may {action} {product.name}"
            return text, reason, where
        builtin = builtin_allow(state.directory, user, roles, product, action)
        if builtin is not None:
            return builtin[0], builtin[1], "policies/rules.py"
        return None

    def _deny(self, state: _State, subject: Any, product: Any, action: Any, reason: str) -> Decision:
        name = product.name if isinstance(product, ProductSpec) else str(product)
        return Decision(False, str(subject), name, str(action), None, reason, state.version)

    def _decide(self, state: _State, subject: Any, product: Any, action: Any) -> Decision:
        if action not in ACTIONS:
            return self._deny(state, subject, product, action, f"unknown action {action!r}")
        if not isinstance(product, ProductSpec):
            return self._deny(state, subject, product, action, "unknown product")
        if (
            not is_name(product.department)
            or not is_name(product.product)
            or product.department == GLOBAL_DOMAIN
            or product.classification not in CLASSIFICATIONS
        ):
            return self._deny(state, subject, product, action, f"invalid product {product.name!r}")
        user = state.directory.users.get(subject) if isinstance(subject, str) else None
        if user is None or not is_name(subject):
            return self._deny(state, subject, product, action, f"unknown subject {subject!r}")
        roles = list(state.roles.get(user.name, ()))
        allowed = self._allow(state, user, roles, product, action)
        if allowed is None:
            reason = denial_reason(state.directory, user, roles, product, action)
            return self._deny(state, subject, product, action, reason)
        rule, reason, where = allowed
        masks: dict[str, str] = {}
        scope = None
        if action in ROW_ACTIONS:
            needs_pii = action != "read_pii" and bool(product.pii_columns)
            if needs_pii and self._allow(state, user, roles, product, "read_pii") is None:
                masks = dict(product.pii_columns)
            scope = row_filter(state.directory, user, roles, product)
        if masks:
            reason += f"; PII columns masked ({', '.join(sorted(masks))})"
        if scope is not None:
            reason += f"; rows limited to {scope.describe()}"
        return Decision(
            allowed=True,
            subject=user.name,
            product=product.name,
            action=action,
            rule=rule,
            reason=reason,
            policy_version=state.version,
            masks=masks,
            row_filter=scope,
            source=where,
        )
