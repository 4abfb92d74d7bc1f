"""Policy versions in the access log: which policy files were loaded or refused, when, and what
changed — so the log says only what happened, and the policy in force at any time can be rebuilt.

A *serving* engine (the gateway's) records each policy it loads (`policy_version`) and each reload
it refuses (`policy_rejected`) as one chained access-log record (subject `civicmesh`), once across
processes (checked under the log's write lock). The record's `snapshot_id` is
`policy:<SHA-256 of the three files>`, its `reason` gives the change line by line (as
`civicmesh policy diff` prints it), `rule` the previous version and `policy_version` the new one.
The files themselves are kept under their digest in `policy_texts` (written in the same
transaction), so anyone rebuilding an old policy can check them against the chained digest.
Read-only commands never record anything.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, Text, select

from meshcore.accesslog import AccessLog, AccessRecord
from meshcore.store import create_tables
from policies.directory import parse_directory
from policies.lint import MODEL_FILE, POLICY_FILE, USERS_FILE, lint_texts, owned_departments, read_texts
from policies.names import PolicyError
from policies.policyfile import Problem, parse_policy

LOADED, REJECTED = "policy_version", "policy_rejected"
MAX_LINES_IN_REASON = 40

metadata = MetaData()

policy_texts = Table(
    "policy_texts",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("model", Text, nullable=False),
    Column("policy", Text, nullable=False),
    Column("users", Text, nullable=False),
)


@dataclass(frozen=True)
class PolicyFiles:
    """The texts of model.conf, policy.csv and users.yaml."""

    model: str
    policy: str
    users: str

    def digest(self) -> str:
        """SHA-256 (hex) over the three texts, each followed by a NUL byte."""
        h = hashlib.sha256()
        for text in (self.model, self.policy, self.users):
            h.update(text.encode())
            h.update(b"\0")
        return h.hexdigest()

    def texts(self) -> dict[str, str]:
        return {MODEL_FILE: self.model, POLICY_FILE: self.policy, USERS_FILE: self.users}


def _lines(name: str, text: str) -> list[str]:
    """The lines that mean something: no blank lines, no comments in policy.csv and model.conf."""
    keep = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (name != USERS_FILE and stripped.startswith("#")):
            continue
        keep.append(line.rstrip() if name == USERS_FILE else stripped)
    return keep


def line_changes(old: PolicyFiles | None, new: PolicyFiles) -> list[str]:
    """`+ file: line` / `- file: line` for every line added or removed, file by file."""
    changes: list[str] = []
    before = old.texts() if old else {}
    for name, text in new.texts().items():
        a, b = _lines(name, before.get(name, "")), _lines(name, text)
        for line in difflib.ndiff(a, b):
            if line[:2] in ("+ ", "- "):
                changes.append(f"{line[0]} {name}: {line[2:]}")
    return changes


def ensure_schema(engine: Engine) -> None:
    create_tables(engine, metadata)


def files_of(engine: Engine, digest: str) -> PolicyFiles | None:
    """The files recorded under `digest`, or None (never recorded, or altered since: the texts
    must hash to the digest the chain names)."""
    with engine.connect() as conn:
        row = conn.execute(select(policy_texts).where(policy_texts.c.digest == digest)).first()
    if row is None:
        return None
    files = PolicyFiles(row.model, row.policy, row.users)
    return files if files.digest() == digest else None


def _summary(changes: list[str]) -> str:
    added = sum(c.startswith("+") for c in changes)
    shown = "; ".join(changes[:MAX_LINES_IN_REASON])
    more = f"; ... {len(changes) - MAX_LINES_IN_REASON} more" if len(changes) > MAX_LINES_IN_REASON else ""
    return (
        f"{added} line(s) added, {len(changes) - added} removed: {shown}{more}"
        if changes
        else "no line changed"
    )


def record(
    log: AccessLog,
    kind: str,
    files: PolicyFiles,
    *,
    version: str,
    previous_version: str | None,
    detail: str = "",
) -> bool:
    """Append one `kind` record for `files` unless the newest policy record already is that one
    (another process recorded it). Returns True if a record was written. Raises the store's
    errors (callers decide whether that stops them)."""
    digest = files.digest()
    ensure_schema(log.engine)
    with log.engine.begin() as conn:
        log.lock(conn)
        loaded, refused = log.latest(conn, LOADED), log.latest(conn, REJECTED)
        newest = max((r for r in (loaded, refused) if r is not None), key=lambda r: r["seq"], default=None)
        if newest is not None and (newest["action"], newest["snapshot_id"]) == (kind, f"policy:{digest}"):
            return False  # another process recorded it
        previous = _loaded_files(conn, loaded)
        if conn.execute(select(policy_texts.c.digest).where(policy_texts.c.digest == digest)).first() is None:
            conn.execute(policy_texts.insert().values(digest=digest, **vars(files)))
        changes = line_changes(previous, files) if previous is not None else []
        base = f"version {previous_version or '(none)'} -> {version}"
        if kind == LOADED:
            what = f"policy loaded: {base}" + ("" if previous else " (the first recorded policy)") + detail
        else:
            what = f"policy reload refused, still serving version {previous_version}: {detail}"
        log.append_in(
            conn,
            [
                AccessRecord(
                    request_id=f"policy-{digest[:16]}",
                    action=kind,
                    status=200 if kind == LOADED else 422,
                    decision="none" if kind == LOADED else "deny",
                    reason=f"{what}; {_summary(changes)}" if previous else what,
                    subject="civicmesh",
                    snapshot_id=f"policy:{digest}",
                    rule=previous_version,
                    policy_version=version if kind == LOADED else previous_version,
                )
            ],
        )
    return True


def _loaded_files(conn: Connection, loaded: dict[str, Any] | None) -> PolicyFiles | None:
    if loaded is None or not str(loaded["snapshot_id"] or "").startswith("policy:"):
        return None
    digest = loaded["snapshot_id"].removeprefix("policy:")
    row = conn.execute(select(policy_texts).where(policy_texts.c.digest == digest)).first()
    return PolicyFiles(row.model, row.policy, row.users) if row is not None else None


@dataclass(frozen=True)
class PolicyEvent:
    """One chained policy record: a version loaded, or a reload refused."""

    seq: int
    ts: str
    kind: str  # policy_version | policy_rejected
    digest: str  # of the files
    version: str | None
    previous: str | None
    reason: str

    @property
    def at(self) -> datetime:
        return datetime.fromisoformat(self.ts.replace("Z", "+00:00"))

    def describe(self) -> str:
        return f"access log seq {self.seq} at {self.ts}: {self.reason}"


def events(log: AccessLog, until: str | None = None) -> list[PolicyEvent]:
    """Every chained policy record (optionally up to the `utc_timestamp` `until`), oldest first."""
    out = []
    for row in log.of_actions((LOADED, REJECTED), until):
        snapshot = str(row["snapshot_id"] or "")
        if not snapshot.startswith("policy:"):
            continue
        out.append(
            PolicyEvent(
                seq=int(row["seq"]),
                ts=row["ts"],
                kind=row["action"],
                digest=snapshot.removeprefix("policy:"),
                version=row["policy_version"],
                previous=row["rule"],
                reason=row["reason"],
            )
        )
    return out


def owned_by(files: PolicyFiles) -> frozenset[str]:
    """Departments with an owner under `files` (empty if they do not parse)."""
    try:
        directory = parse_directory(files.users, USERS_FILE)
    except PolicyError:
        return frozenset()
    rules, _ = parse_policy(files.policy, POLICY_FILE)
    return frozenset(owned_departments(rules, directory))


def served_owned(log: AccessLog) -> frozenset[str]:
    """Departments with an owner under the last policy the log records as loaded (empty when
    none is recorded, or its files are missing or altered). Reads only."""
    with log.engine.connect() as conn:
        loaded = log.latest(conn, LOADED)
    if loaded is None or not str(loaded["snapshot_id"] or "").startswith("policy:"):
        return frozenset()
    files = files_of(log.engine, loaded["snapshot_id"].removeprefix("policy:"))
    return owned_by(files) if files is not None else frozenset()


@dataclass(frozen=True)
class PolicyStatus:
    """What the log says is served, whether a reload was refused since, and the files on disk."""

    served: PolicyEvent | None  # the newest `policy_version` record
    refused: PolicyEvent | None  # a `policy_rejected` record newer than it, if any
    disk: str  # digest of the files on disk ("" if unreadable)
    problems: tuple[Problem, ...]  # lint findings for the files on disk

    @property
    def ok(self) -> bool:
        return self.refused is None and not self.problems


def status(log: AccessLog, policies_dir: Path) -> PolicyStatus:
    """Read-only: the chained policy records and the lint rules applied to the files on disk
    (including owners lost since the served version)."""
    served = refused = None
    for event in events(log):
        if event.kind == LOADED:
            served, refused = event, None
        else:
            refused = event
    texts, unreadable = read_texts(policies_dir)
    previous = files_of(log.engine, served.digest) if served else None
    problems = unreadable + [
        p
        for p in lint_texts(texts, previously_owned=owned_by(previous) if previous else ())
        if p.code != "missing"
    ]
    disk = (
        PolicyFiles(*(texts[n] for n in (MODEL_FILE, POLICY_FILE, USERS_FILE))).digest()
        if not unreadable
        else ""
    )
    return PolicyStatus(served, refused, disk, tuple(problems))
