"""GraphQL names derived from product and column names (snake_case in, camel/Pascal out)."""

from __future__ import annotations

import re

GRAPHQL_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def valid(name: str) -> bool:
    return bool(GRAPHQL_NAME.match(name)) and not name.startswith("__")
