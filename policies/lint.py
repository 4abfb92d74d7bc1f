"""The policy's lint rules, in one place: `civicmesh policy check` prints them, and the engine
refuses to load (or reload) a policy with any finding and keeps the last good one.

Besides malformed lines and names that do not resolve, a policy is refused when it would leave the
organisation ungoverned: an empty policy (an emptied or truncated file), a department left without
an owner (nobody to approve its access requests; a file cut at a line boundary drops the `g`
lines at its end), or a role in the directory that no line gives any right.

Two rules catch rights that do not do what their author meant: `read` granted without `discover`
(the subject may read rows of a product it cannot find), and, with the product list, a product that
has a scope column (a column a `scopes:` attribute of users.yaml limits, e.g. `district`) but does
not declare it as its `scope_column`: every scoped reader would silently see every row (the gateway
serves such a reader none, `policies.rules.row_filter`). The owner either declares it or records
`meta.civicmesh.unscoped: "<why every row may be seen>"`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path

from meshcore.products import ProductSpec
from policies.decision import SYSTEM_ACTIONS
from policies.directory import Directory, parse_directory
from policies.names import GLOBAL_DOMAIN, OBJECT_TOKENS, PolicyError
from policies.policyfile import Problem, Rule, parse_policy
from policies.rules import undeclared_scope

MODEL_FILE, POLICY_FILE, USERS_FILE = "model.conf", "policy.csv", "users.yaml"
# Casbin matcher functions that turn names into patterns; regexMatch is only start-anchored.
PATTERN_FUNCTIONS = re.compile(r"\b(keyMatch\d?|keyGet\d?|regexMatch|globMatch|ipMatch)\s*\(")


def lint_model(text: str) -> list[Problem]:
    problems: list[Problem] = []
    matchers = [
        (n, line) for n, line in enumerate(text.splitlines(), start=1) if re.match(r"\s*m\d*\s*=", line)
    ]
    if not matchers:
        problems.append(Problem(MODEL_FILE, "no-matcher", "the model has no [matchers] m = ... line"))
    for number, line in matchers:
        where = f"{MODEL_FILE}:{number}"
        if "eval(" in line:
            problems.append(Problem(where, "eval-like", "eval() in a matcher runs stored rule text"))
        for match in PATTERN_FUNCTIONS.finditer(line):
            problems.append(
                Problem(where, "pattern", f"{match.group(1)}() matches names as patterns; use ==")
            )
    return problems


def lint_rules(
    rules: Iterable[Rule], directory: Directory | None, products: list[ProductSpec] | None
) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[tuple[str, ...], str] = {}
    names = {p.name for p in products or ()}
    departments = {p.department for p in products or ()}
    for rule in rules:
        key = (rule.ptype, *rule.fields)
        if key in seen:
            problems.append(Problem(rule.where, "duplicate", f"same rule as {seen[key]}"))
        seen.setdefault(key, rule.where)
        domain = rule.fields[1] if rule.ptype == "p" else rule.fields[2]
        if products is not None and domain != GLOBAL_DOMAIN and domain not in departments:
            problems.append(Problem(rule.where, "unknown-domain", f"no product has department {domain!r}"))
        if rule.ptype == "p":
            sub, _, obj, act = rule.fields
            objects_are_products = act not in SYSTEM_ACTIONS  # else a namespace, not a product
            if (
                objects_are_products
                and obj not in OBJECT_TOKENS
                and products is not None
                and obj not in names
            ):
                problems.append(Problem(rule.where, "unknown-product", f"no product named {obj!r}"))
            if directory is not None and sub not in directory.roles and sub not in directory.users:
                problems.append(
                    Problem(rule.where, "unknown-subject", f"{sub!r} is neither a role nor a user")
                )
        elif directory is not None:
            user, role, _ = rule.fields
            if user not in directory.users:
                problems.append(Problem(rule.where, "unknown-user", f"{user!r} is not in {USERS_FILE}"))
            if role not in directory.roles:
                problems.append(
                    Problem(rule.where, "unknown-role", f"{role!r} is not declared in {USERS_FILE}")
                )
    return problems


def _covers(granted: str, obj: str, restricted: Collection[str]) -> bool:
    """Whether a line's object `granted` covers `obj` (`**` all, `*` all but restricted)."""
    return granted == obj or granted == "**" or (granted == "*" and obj != "**" and obj not in restricted)


def lint_discover(rules: list[Rule], restricted: Collection[str] = ()) -> list[Problem]:
    """`read` granted without `discover` of the same products, to the subject itself or to a role
    it holds in that domain (or in `global`). `restricted`: the names of restricted products (a
    `*` line does not cover them)."""
    roles_of: dict[tuple[str, str], set[str]] = {}
    for r in rules:
        if r.ptype == "g":
            roles_of.setdefault((r.fields[0], r.fields[2]), set()).add(r.fields[1])
    discover = [r.fields for r in rules if r.ptype == "p" and r.fields[3] == "discover"]
    problems = []
    for rule in rules:
        if rule.ptype != "p" or rule.fields[3] != "read":
            continue
        sub, dom, obj, _ = rule.fields
        subjects = {sub} | roles_of.get((sub, dom), set()) | roles_of.get((sub, GLOBAL_DOMAIN), set())
        if not any(
            s in subjects and d in (dom, GLOBAL_DOMAIN) and _covers(o, obj, restricted)
            for s, d, o, _ in discover
        ):
            problems.append(
                Problem(
                    rule.where,
                    "read-without-discover",
                    f"{sub!r} may read {obj!r} in {dom!r} but not discover it: add "
                    f"`p, {sub}, {dom}, {obj}, discover`",
                )
            )
    return problems


def lint_scope(products: Iterable[ProductSpec], directory: Directory) -> list[Problem]:
    """A product with a column some scope attribute limits (users.yaml `scopes:`) that it declares
    neither as `scope_column` nor `unscoped: "<reason>"` (`policies.rules.undeclared_scope`):
    scoped readers would see every row, so the gateway serves them none."""
    problems = []
    for product in products:
        declared = (
            f"its scope_column is {product.scope_column!r}"
            if product.scope_column
            else "declares no scope_column"
        )
        for column in undeclared_scope(product, directory.scopes):
            problems.append(
                Problem(
                    product.source_file or product.name,
                    "undeclared-scope",
                    f"{product.name} has column {column!r}, which scopes readers, but {declared}: every "
                    f"scoped reader would see every row (the gateway serves them none). Declare "
                    f'`meta.civicmesh.scope_column: {column}`, or `unscoped: "<why>"`',
                )
            )
    return problems


def owned_departments(rules: Iterable[Rule], directory: Directory) -> set[str]:
    """Departments where some user holds a role that `owns: true`."""
    owning = {name for name, role in directory.roles.items() if role.owns}
    return {r.fields[2] for r in rules if r.ptype == "g" and r.fields[1] in owning}


def lint_coverage(
    rules: list[Rule],
    directory: Directory,
    products: list[ProductSpec] | None = None,
    previously_owned: Collection[str] = (),
) -> list[Problem]:
    """What a policy leaves ungoverned: no rights at all, departments without an owner (every
    department named by a line or a product, and every one that had an owner before), roles
    that grant nothing."""
    problems: list[Problem] = []
    p_rules = [r for r in rules if r.ptype == "p"]
    if not p_rules:
        problems.append(
            Problem(POLICY_FILE, "empty-policy", "no p lines: nobody holds any right (emptied or cut off?)")
        )
    if not directory.users:
        problems.append(Problem(USERS_FILE, "empty-directory", "no users: everybody would be denied"))
    departments = {r.fields[1] for r in p_rules} | {r.fields[2] for r in rules if r.ptype == "g"}
    departments |= {p.department for p in products or ()} | set(previously_owned)
    owned = owned_departments(rules, directory)
    for department in sorted(departments - owned - {GLOBAL_DOMAIN}):
        lost = " (it had one in the last good policy)" if department in previously_owned else ""
        problems.append(
            Problem(
                POLICY_FILE,
                "no-owner",
                f"department {department!r} has no owner{lost}: nobody approves its requests",
            )
        )
    granted = {r.fields[0] for r in p_rules}
    for role in sorted(set(directory.roles) - granted):
        problems.append(
            Problem(USERS_FILE, "role-without-rights", f"role {role!r}: no p line gives it any right")
        )
    return problems


def lint_texts(
    texts: dict[str, str],
    products: list[ProductSpec] | None = None,
    previously_owned: Collection[str] = (),
) -> list[Problem]:
    """Every problem in the three files' texts (keyed by file name; a missing key is a missing
    file). `products` enables the existence checks; `previously_owned` (the departments the last
    good policy gave an owner) catches an owner lost in a change."""
    problems = [
        Problem(n, "missing", "no such file") for n in (MODEL_FILE, POLICY_FILE, USERS_FILE) if n not in texts
    ]
    if MODEL_FILE in texts:
        problems += lint_model(texts[MODEL_FILE])
    directory = None
    if USERS_FILE in texts:
        try:
            directory = parse_directory(texts[USERS_FILE], USERS_FILE)
        except PolicyError as exc:
            problems.append(Problem(USERS_FILE, "invalid", str(exc)))
    if POLICY_FILE in texts:
        rules, bad = parse_policy(texts[POLICY_FILE], POLICY_FILE)
        problems += bad
        problems += lint_rules(rules, directory, products)
        problems += lint_discover(rules, {p.name for p in products or () if p.classification == "restricted"})
        if directory is not None:
            problems += lint_coverage(rules, directory, products, previously_owned)
    if directory is not None and products is not None:
        problems += lint_scope(products, directory)
    for product in products or ():
        if product.department == GLOBAL_DOMAIN:
            problems.append(Problem(product.name, "reserved", f"department {GLOBAL_DOMAIN!r} is reserved"))
    return problems


def read_texts(policies_dir: Path) -> tuple[dict[str, str], list[Problem]]:
    """The three files' texts (those that could be read) and a problem for each that could not."""
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for name in (MODEL_FILE, POLICY_FILE, USERS_FILE):
        try:
            texts[name] = (policies_dir / name).read_text()
        except OSError as exc:
            problems.append(Problem(name, "missing", str(exc)))
    return texts, problems


def lint_dir(policies_dir: Path, products: list[ProductSpec] | None = None) -> list[Problem]:
    """All problems in model.conf, policy.csv and users.yaml; `products` enables existence checks."""
    texts, unreadable = read_texts(policies_dir)
    return unreadable + [p for p in lint_texts(texts, products) if p.code != "missing"]
