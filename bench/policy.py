"""Decisions per second for a realistic policy, cached and uncached: `python bench/policy.py`.

Generates a synthetic organisation in a temp folder (default 90 departments x 12 role rules plus
individual rights = 1,000+ policy lines, 600 users, 450 products) and times `PolicyEngine.decide`
on random (subject, product, action) triples: once on a cold cache (every call runs Casbin) and
once on a warm one (the gateway's steady state).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from meshcore.products import ColumnSpec, ProductSpec
from policies.decision import ACTIONS
from policies.engine import PolicyEngine

ROLE_ACTIONS = {
    "owner": ACTIONS,
    "analyst": ("discover", "read", "export"),
    "supervisor": ("discover", "read"),
}
CLASSES = ("public", "internal", "internal", "confidential", "restricted")


def write_policy(folder: Path, departments: int, users: int, extra: int, seed: int) -> list[ProductSpec]:
    rnd = random.Random(seed)
    shipped = Path(__file__).resolve().parent.parent / "policies"
    shutil.copy(shipped / "model.conf", folder / "model.conf")
    depts = [f"dept_{i:03d}" for i in range(departments)]
    products = [
        ProductSpec(
            department=d,
            product=f"product_{j}",
            classification=CLASSES[j % len(CLASSES)],
            owner=f"{d}@city.example",
            description="",
            columns=(
                ColumnSpec("id", "bigint"),
                ColumnSpec("district", "varchar"),
                ColumnSpec("name", "varchar", tags=("pii",), mask="hash"),
            ),
            scope_column="district" if j % 2 else None,
        )
        for d in depts
        for j in range(5)
    ]
    lines = [
        f"p, {role}, {d}, {'**' if role == 'owner' else '*'}, {a}"
        for d in depts
        for role, acts in ROLE_ACTIONS.items()
        for a in acts
    ]
    names = [f"user_{i:04d}" for i in range(users)]
    for _ in range(extra):
        p, name, action = rnd.choice(products), rnd.choice(names), rnd.choice(ACTIONS[:4])
        if action == "read":  # the policy lint refuses `read` without `discover`
            lines.append(f"p, {name}, {p.department}, {p.name}, discover")
        lines.append(f"p, {name}, {p.department}, {p.name}, {action}")
    for name in names:
        for _ in range(rnd.randint(1, 2)):
            lines.append(f"g, {name}, {rnd.choice(list(ROLE_ACTIONS))}, {rnd.choice(depts)}")
    # every department has an owner (the policy lint refuses a department without one)
    lines += [f"g, {names[i % len(names)]}, owner, {d}" for i, d in enumerate(depts)]
    (folder / "policy.csv").write_text("\n".join(dict.fromkeys(lines)) + "\n")
    users_yaml = [
        "scopes:\n  districts: district",
        "roles:\n  owner: {owns: true}\n  analyst: {}\n  supervisor: {scope: [districts]}",
        "users:",
    ]
    for name in names:
        users_yaml.append(
            f"  {name}:\n    email: {name}@city.example\n    department: {rnd.choice(depts)}\n"
            f"    attributes: {{districts: [D{rnd.randint(1, 9)}]}}"
        )
    (folder / "users.yaml").write_text("\n".join(users_yaml) + "\n")
    return products


def rate(engine: PolicyEngine, triples: list[tuple[str, ProductSpec, str]], cold: bool) -> float:
    start = time.perf_counter()
    for subject, product, action in triples:
        if cold:
            engine._state.cache.clear()  # force the Casbin path for every call
        engine.decide(subject, product, action)
    return len(triples) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--departments", type=int, default=90)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--extra-rules", type=int, default=100, help="individual p lines")
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument(
        "--request-ms",
        type=float,
        default=6.8,
        help="a typical governed gateway request (bench/gateway.py p50)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        products = write_policy(folder, args.departments, args.users, args.extra_rules, seed=7)
        t0 = time.perf_counter()
        engine = PolicyEngine.from_dir(folder)
        load_ms = (time.perf_counter() - t0) * 1000
    rules = sum(1 for r in engine.rules() if r.ptype == "p")
    grouping = sum(1 for r in engine.rules() if r.ptype == "g")
    rnd = random.Random(11)
    users = [u.name for u in engine.users()]
    triples = [(rnd.choice(users), rnd.choice(products), rnd.choice(ACTIONS)) for _ in range(args.decisions)]
    uncached = rate(engine, triples, cold=True)
    warm = triples[:200]
    for t in warm:
        engine.decide(*t)
    cached = rate(engine, warm * (args.decisions * 10 // len(warm)), cold=False)
    print(f"policy: {rules} p rules + {grouping} g rules, {len(users)} users, {len(products)} products")
    print(f"load: {load_ms:.0f} ms")
    print(f"uncached: {uncached:,.0f} decisions/s ({1e6 / uncached:.0f} us each)")
    print(f"cached:   {cached:,.0f} decisions/s ({1e6 / cached:.2f} us each)")
    if args.request_ms:
        share = (1e3 / uncached) / args.request_ms
        print(f"one uncached decision = {share:.1%} of a {args.request_ms:g} ms request; cached ~0%")


if __name__ == "__main__":
    main()
