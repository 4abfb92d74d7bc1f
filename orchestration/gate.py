"""The publish gate: one decision per product from this build's dbt results and the PII gate.

A product is held back (status `failed`) when anything it is built from failed in this build: its
model or an upstream model, seed or snapshot did not build; a test of severity error (generic,
singular or unit test, anywhere in the project) failed or errored on its model or on any node
upstream of it; the PII gate found an undeclared or unknown PII column; or it reads another
department's data other than its public products without personal data (`foreign_inputs`); or it
is classified below a product it is built from without a `declassified` reason (`stricter_inputs`);
or its declared `key` is not unique in the built mart (`key_message`). A failing
`severity: warn` test is recorded (status `warned`) and the product publishes. Every product that
depends on none of it publishes in the same build: the blast radius of a failure is the product and
what is built from it.

Which node a test checks: a generic test's `attached_node`, else (singular tests) every node it
refs. A check's `message` is served by the catalog to everyone who may discover the product; the
database's own message (which can quote row values) is kept apart in `detail`, for the build
summary and operators only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from lineage.classification import PiiFinding
from lineage.dbt import manifest_node
from meshcore.products import (
    CLASSIFICATIONS,
    ProductSpec,
    civicmesh_meta,
    column_classification,
    is_product_node,
)

TESTS = ("test.", "unit_test.")
CONTRACT_FAILED = "enforced contract that failed"  # dbt's message when a model drifts from its contract
MACRO_STACK = ("> in macro ", "> called by ")
BAD = ("error", "fail", "warn", "runtime error")  # dbt node statuses that are a finding


@dataclass(frozen=True)
class FailedCheck:
    name: str  # the dbt node (test or model) or `pii_gate.<column>`
    message: str  # safe to show to anyone who may discover the product
    severity: str  # "error" holds the product back, "warn" is recorded
    detail: str = ""  # the database's own message: build summary and operators only, never GraphQL

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "message": self.message, "severity": self.severity, "detail": self.detail}


@dataclass(frozen=True)
class GateResult:
    product: str
    failed: tuple[FailedCheck, ...] = ()
    checks: tuple[dict[str, str], ...] = ()  # every test that ran on the product or upstream
    deidentified: tuple[PiiFinding, ...] = field(default=())
    leaks: tuple[PiiFinding, ...] = field(default=())  # the blocking PII findings (see quarantine)

    @property
    def status(self) -> str:
        severities = {c.severity for c in self.failed}
        return "failed" if "error" in severities else ("warned" if severities else "passed")

    @property
    def held_back(self) -> bool:
        return self.status == "failed"

    def quality(self, run_id: str, checked_at: datetime) -> dict[str, Any]:
        """The catalog's quality record (`Catalog.record_quality`)."""
        return {
            "status": self.status,
            "run_id": run_id,
            "checked_at": checked_at.isoformat(),
            "failed_checks": [c.to_json() for c in self.failed],
            "checks": list(self.checks),
            "deidentified": [
                {"column": f.column, "reason": f.reason, "path": list(f.path)} for f in self.deidentified
            ],
        }


def _walk(
    manifest: Mapping[str, Any], uid: str, stop: Callable[[Mapping[str, Any]], bool]
) -> tuple[list[str], set[str]]:
    """Upstream of `uid` through `depends_on`: (the nodes where `stop(node)` holds, not walked
    beyond, sorted; every node seen, `uid` included)."""
    found: list[str] = []
    seen, stack = {uid}, [uid]
    while stack:
        node = manifest_node(manifest, stack.pop()) or {}
        for parent in (node.get("depends_on") or {}).get("nodes") or ():
            if parent not in seen:
                seen.add(parent)
                (found if stop(manifest_node(manifest, parent) or {}) else stack).append(parent)
    return sorted(found), seen


def upstream(manifest: Mapping[str, Any], uid: str) -> set[str]:
    """`uid` and every node it is built from (refs and sources, transitively)."""
    return _walk(manifest, uid, lambda node: False)[1]


def department_of(node: Mapping[str, Any]) -> str:
    """The department a manifest node belongs to: its dbt group, else its folder
    `models/<department>/` (a source has no group); "" for a node outside both (a seed)."""
    group = node.get("group") or (node.get("config") or {}).get("group")
    parts = str(node.get("original_file_path") or "").split("/")
    return str(group or (parts[1] if len(parts) > 2 and parts[0] == "models" else ""))


def open_product(node: Mapping[str, Any]) -> bool:
    """A `public` product without personal data: what any department may build on (its warehouse
    table holds nothing its readers do not see)."""
    columns = (node.get("columns") or {}).values()
    return (
        is_product_node(node)
        and classification_of(node) == "public"
        and not any(column_classification(c).pii for c in columns)
    )


def foreign_inputs(manifest: Mapping[str, Any], uid: str, department: str) -> list[str]:
    """What model `uid` of `department` reads, transitively, from another department other than
    its public products without personal data (`open_product`). A department's other products,
    sources and private models hold rows and unmasked columns its own governance decides about;
    built into a product of `department`, they would be read, unmasked (`read_pii`) and granted by
    `department`'s owner (transforms/README.md: the cross-department case reads public products)."""
    other, _ = _walk(manifest, uid, lambda node: department_of(node) not in (department, ""))
    return [u for u in other if not open_product(manifest_node(manifest, u) or {})]


def input_products(manifest: Mapping[str, Any], uid: str) -> list[str]:
    """The products model `uid` is built from: reached through its models and sources, not through
    another product (whose own inputs that product's gate judges)."""
    return _walk(manifest, uid, is_product_node)[0]


def classification_of(node: Mapping[str, Any]) -> str:
    return str(civicmesh_meta(node).get("classification"))


def stricter_inputs(manifest: Mapping[str, Any], spec: ProductSpec) -> list[str]:
    """The products `spec` is built from that are classified more strictly than it, unless its owner
    recorded `declassified: "<reason>"`: their readers would otherwise read them through it (a
    restricted register copied into an internal product is read by all staff)."""
    if spec.declassified or spec.classification not in CLASSIFICATIONS:
        return []
    rank = CLASSIFICATIONS.index(spec.classification)
    return [
        uid
        for uid in input_products(manifest, spec.model_unique_id)
        if classification_of(manifest_node(manifest, uid) or {}) in CLASSIFICATIONS[rank + 1 :]
    ]


def downgrade_message(manifest: Mapping[str, Any], uid: str, spec: ProductSpec) -> str:
    node = manifest_node(manifest, uid) or {}
    return (
        f"{spec.name} is {spec.classification} but built from {department_of(node)}.{node.get('name')} "
        f"({classification_of(node)}): classify it {classification_of(node)}, or record "
        '`declassified: "<why its rows may be read more widely>"`'
    )


def boundary_message(manifest: Mapping[str, Any], uid: str, department: str) -> str:
    node = manifest_node(manifest, uid) or {}
    kind, name = uid.split(".")[0], ".".join(uid.split(".")[2:])
    return (
        f"reads {kind} {name} of department {department_of(node)!r}: {department} may build only on "
        "another department's public products without personal data (request access to read the rest)"
    )


def _checked_nodes(manifest: Mapping[str, Any], uid: str) -> set[str]:
    test = manifest_node(manifest, uid) or (manifest.get("unit_tests") or {}).get(uid) or {}
    if test.get("attached_node"):
        return {test["attached_node"]}
    return set((test.get("depends_on") or {}).get("nodes") or ())


def _node_name(manifest: Mapping[str, Any], uid: str) -> str:
    node = manifest_node(manifest, uid) or (manifest.get("unit_tests") or {}).get(uid) or {}
    return str(node.get("name") or uid.split(".")[-1])


def _compiled(manifest: Mapping[str, Any], uid: str, target: str | None) -> str:
    node = manifest_node(manifest, uid) or {}
    path = node.get("compiled_path") or node.get("original_file_path") or uid
    return f"{target.rstrip('/')}/{path.split('target/', 1)[-1]}" if target and "target/" in path else path


def _failure(manifest: Mapping[str, Any], result: Mapping[str, Any], target: str | None) -> FailedCheck:
    """One failed dbt node as a check; the database message goes to `detail` only."""
    uid, status = result["unique_id"], str(result.get("status"))
    name, where = _node_name(manifest, uid), _compiled(manifest, uid, target)
    if uid.startswith(TESTS):
        on = ", ".join(sorted(_node_name(manifest, n) for n in _checked_nodes(manifest, uid)))
        rows = result.get("failures")
        what = (
            f"{rows} failing row{'s' if rows != 1 else ''}" if status in ("fail", "warn") else "could not run"
        )
        severity = "warn" if status == "warn" else "error"
        return FailedCheck(name, f"dbt test {name} on {on}: {what} (compiled SQL: {where})", severity)
    message = str(result.get("message") or status)
    # dbt wraps the database's error ("Runtime Error in model x ...\n  Binder Error: ..."): name the
    # innermost kind, which is what went wrong; its text may quote data, so it stays in `detail`.
    kinds = re.findall(r"^\s*([A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*)* Error)\b", message, flags=re.MULTILINE)
    kind = kinds[-1] if kinds else status
    if CONTRACT_FAILED in message:  # dbt reports it as a Compilation Error, with the column table
        kind = "Contract Error"
    # dbt's macro call stack ("> in macro ...", "> called by ...") says nothing to the model's owner.
    message = "\n".join(line for line in message.splitlines() if not line.strip().startswith(MACRO_STACK))
    return FailedCheck(
        name,
        f"dbt {uid.split('.')[0]} {name} failed to build ({kind}; compiled SQL: {where})",
        "error",
        message,
    )


def key_message(spec: ProductSpec, repeated: int | None) -> str:
    """Why `spec`'s key holds it back: `repeated` values stand on more than one row, or (None) its
    mart could not be read to tell. Counts only: messages are served to whoever may discover it."""
    if repeated is None:
        return (
            f"key {spec.key!r} could not be checked: the built mart could not be read (see the run's "
            "log); a key that may repeat would skip rows in the gateway's pages"
        )
    return (
        f"key {spec.key!r} is not unique: {repeated} of its values stand on more than one row. The "
        "gateway pages and resumes cursors by the key, so readers would see rows skipped or in an "
        "order the key does not decide; declare a unique key (a dbt `unique` test names the values) "
        "or none"
    )


def _gate_one(
    manifest: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
    failures: Mapping[str, FailedCheck],
    spec: ProductSpec,
    findings: Sequence[PiiFinding],
    repeated_keys: Mapping[str, int | None],
) -> GateResult:
    built_from = upstream(manifest, spec.model_unique_id)
    failed: list[FailedCheck] = []
    checks = []
    for uid, result in results.items():
        if uid.startswith(TESTS) and _checked_nodes(manifest, uid) & built_from:
            checks.append({"name": _node_name(manifest, uid), "status": str(result.get("status"))})
            failed += [failures[uid]] if uid in failures else []
        elif uid in built_from and uid in failures:
            failed.append(failures[uid])
    status = str((results.get(spec.model_unique_id) or {}).get("status") or "not run")
    if status != "success" and not any(c.severity == "error" for c in failed):
        name = _node_name(manifest, spec.model_unique_id)
        failed.append(FailedCheck(f"model {name}", f"dbt did not build model {name} ({status})", "error"))
    # A model that did not build in this run has nothing to classify (dbt compiles only what it
    # runs): why it did not build is the finding.
    failed += [
        FailedCheck(f"boundary.{uid}", boundary_message(manifest, uid, spec.department), "error")
        for uid in foreign_inputs(manifest, spec.model_unique_id, spec.department)
    ]
    failed += [
        FailedCheck(f"classification.{uid}", downgrade_message(manifest, uid, spec), "error")
        for uid in stricter_inputs(manifest, spec)
    ]
    if status == "success" and spec.name in repeated_keys and repeated_keys[spec.name] != 0:
        failed.append(FailedCheck(f"key.{spec.key}", key_message(spec, repeated_keys[spec.name]), "error"))
    own = [f for f in findings if f.product == spec.name and status == "success"]
    failed += [FailedCheck(f"pii_gate.{f.column}", f.message, "error") for f in own if f.blocking]
    deidentified = tuple(f for f in own if f.kind == "deidentified")
    leaks = tuple(f for f in own if f.blocking)
    return GateResult(spec.name, tuple(failed), tuple(checks), deidentified, leaks)


def gate_products(
    manifest: Mapping[str, Any],
    run_results: Mapping[str, Any],
    specs: Iterable[ProductSpec],
    findings: Sequence[PiiFinding] = (),
    target: str | None = None,
    repeated_keys: Mapping[str, int | None] | None = None,
) -> dict[str, GateResult]:
    """{product name: GateResult} for `specs` after one `dbt build` (`run_results.json`).

    `findings`: the PII gate's (`lineage.classification.pii_findings`); `target`: the dbt target
    folder, to point at compiled SQL; `repeated_keys`: {product: how many values of its declared
    key stand on more than one row of its built mart, None when it could not be read}
    (`orchestration.transform.repeated_keys`).
    A product built from another product that is held back is held back too: what it publishes
    could not be reconciled with what its input serves."""
    results = {r["unique_id"]: r for r in run_results.get("results") or ()}
    failures = {uid: _failure(manifest, r, target) for uid, r in results.items() if r.get("status") in BAD}
    specs = list(specs)
    repeated = repeated_keys or {}
    gates = {s.name: _gate_one(manifest, results, failures, s, findings, repeated) for s in specs}
    held = {s.model_unique_id: s.name for s in specs if gates[s.name].held_back}
    for spec in specs:
        gate = gates[spec.name]
        inputs = sorted(
            n
            for uid, n in held.items()
            if uid != spec.model_unique_id and uid in upstream(manifest, spec.model_unique_id)
        )
        if inputs and not gate.held_back:
            extra = tuple(
                FailedCheck(f"upstream {n}", f"built from {n}, which is held back in this build", "error")
                for n in inputs
            )
            gates[spec.name] = replace(gate, failed=gate.failed + extra)
    return gates
