"""Name rules shared by the policy files, the directory and the grant store.

Casbin stores rules as comma-separated text: a comma or `]` in a stored name breaks every later
enforce() after a reload (ARCHITECTURE.md 2b), so every name is validated before it is stored.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
# The one cross-department domain the engine consults explicitly (no wildcard domains anywhere).
GLOBAL_DOMAIN = "global"
# Literal object tokens understood by the matcher (compared with ==, never as patterns).
ALL_BUT_RESTRICTED = "*"
ALL_PRODUCTS = "**"
OBJECT_TOKENS = (ALL_BUT_RESTRICTED, ALL_PRODUCTS)


class PolicyError(ValueError):
    """A policy, directory or grant input is invalid; the message names where and why."""


def is_name(value: object) -> bool:
    return isinstance(value, str) and bool(NAME_RE.match(value))


def check_name(kind: str, value: object) -> str:
    if not is_name(value):
        raise PolicyError(f"invalid {kind} {value!r}: use only letters, digits and _ . : -")
    return str(value)
