"""Parse policy.csv into validated rules, keeping line numbers for explanations and lint.

We parse it ourselves (instead of Casbin's FileAdapter) so that nothing reaches Casbin before it
was validated, and so that every rule can be traced back to its line.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.decision import POLICY_ACTIONS, SYSTEM_ACTIONS
from policies.names import GLOBAL_DOMAIN, OBJECT_TOKENS, is_name


@dataclass(frozen=True)
class Rule:
    ptype: str  # "p" or "g"
    fields: tuple[str, ...]  # p: sub, dom, obj, act; g: user, role, dom
    source: str
    line: int

    @property
    def text(self) -> str:
        return ", ".join((self.ptype, *self.fields))

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Problem:
    where: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.code}: {self.message}"


def parse_policy(text: str, source: str = "policy.csv") -> tuple[list[Rule], list[Problem]]:
    """Every rule that is well formed, and a problem for every line that is not."""
    rules: list[Rule] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        parts = [p.strip() for p in line.split(",")]
        ptype, fields = parts[0], tuple(parts[1:])
        if ptype not in ("p", "g"):
            problems.append(Problem(where, "bad-type", f"rule type {ptype!r}: only p and g lines exist"))
            continue
        expected = 4 if ptype == "p" else 3
        if len(fields) != expected:
            problems.append(
                Problem(where, "bad-arity", f"{ptype} needs {expected} fields, got {len(fields)}")
            )
            continue
        bad = False
        for index, value in enumerate(fields):
            if ptype == "p" and index == 2 and value in OBJECT_TOKENS:
                continue
            if "*" in value and ((ptype == "p" and index == 1) or (ptype == "g" and index == 2)):
                problems.append(Problem(where, "wildcard-domain", f"{value!r}: domains are never patterns"))
                bad = True
            elif any(c in value for c in "()") or "eval" in value.lower():
                problems.append(Problem(where, "eval-like", f"{value!r} looks like code, not a name"))
                bad = True
            elif any(c in value for c in "^$*+?[]{}|\\"):
                problems.append(Problem(where, "pattern", f"{value!r}: patterns are not allowed"))
                bad = True
            elif not is_name(value):
                problems.append(Problem(where, "bad-name", f"{value!r}: use only [A-Za-z0-9_.:-]"))
                bad = True
        if bad:
            continue
        if ptype == "p":
            _, dom, obj, act = fields
            if act not in POLICY_ACTIONS:
                problems.append(Problem(where, "unknown-action", f"{act!r} is not one of {POLICY_ACTIONS}"))
                continue
            if act in SYSTEM_ACTIONS:
                if dom != GLOBAL_DOMAIN:
                    problems.append(
                        Problem(
                            where, "system-action", f"{act!r} is granted in domain {GLOBAL_DOMAIN!r} only"
                        )
                    )
                    continue
                rules.append(Rule(ptype, fields, source, number))
                continue
            if obj not in OBJECT_TOKENS and dom != GLOBAL_DOMAIN and not obj.startswith(f"{dom}."):
                problems.append(
                    Problem(where, "foreign-object", f"{obj!r} is not a product of domain {dom!r}")
                )
                continue
        rules.append(Rule(ptype, fields, source, number))
    return rules, problems
