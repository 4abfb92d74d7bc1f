"""`civicmesh policy check`: every problem in the policy files at once, before anything is loaded.

The engine refuses to load a bad policy (and keeps the last good one); the linter says why, line by
line, so a reviewer sees the problems in the pull request instead of in production.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from civicmesh.products import ProductSpec
from policies.decision import SYSTEM_ACTIONS
from policies.directory import Directory, parse_directory
from policies.names import GLOBAL_DOMAIN, OBJECT_TOKENS, PolicyError
from policies.policyfile import Problem, Rule, parse_policy

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


def lint_dir(policies_dir: Path, products: list[ProductSpec] | None = None) -> list[Problem]:
    """All problems in model.conf, policy.csv and users.yaml; `products` enables existence checks."""
    problems: list[Problem] = []
    texts: dict[str, str] = {}
    for name in (MODEL_FILE, POLICY_FILE, USERS_FILE):
        try:
            texts[name] = (policies_dir / name).read_text()
        except OSError as exc:
            problems.append(Problem(name, "missing", str(exc)))
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
    for product in products or ():
        if product.department == GLOBAL_DOMAIN:
            problems.append(Problem(product.name, "reserved", f"department {GLOBAL_DOMAIN!r} is reserved"))
    return problems
