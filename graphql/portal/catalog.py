"""The catalog page (`GET /`): search and facets over the products the user may discover.

The search is the gateway's ranked `products(search:)` (every term must match; name, tags,
description, columns, in that order of weight), narrowed by its `department`, `classification` and
`tag` arguments, whose counts come from `productFacets` with the same arguments. Freshness, quality
and "I can read" narrow further on what the same response says of each product (`freshness.stale`,
`qualityStatus`, `myAccess`): the portal judges nothing itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from portal import documents
from portal.backend import PageError, Reader
from portal.pages import Pages

GATEWAY_FACETS = ("department", "classification", "tag")
PORTAL_FACETS = ("freshness", "quality", "access")
MAX_SEARCH = 200


def freshness_of(product: dict[str, Any]) -> str:
    stale = (product.get("freshness") or {}).get("stale")
    return "unknown" if stale is None else ("stale" if stale else "fresh")


def access_of(product: dict[str, Any]) -> str:
    """`read`, `masked` (read with masks or a row filter) or `request` (no read right)."""
    access = product["myAccess"]
    if not access["read"]:
        return "request"
    return "masked" if access["maskedColumns"] or access["rowFilter"] else "read"


ACCESS_LABELS = {"read": "I can read", "masked": "I can read (masked or scoped)", "request": "I must request"}


class CatalogPage:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def show(self, request: Request, reader: Reader) -> Response:
        params = request.query_params
        chosen = {
            name: params.get(name, "").strip()[:MAX_SEARCH] for name in (*GATEWAY_FACETS, *PORTAL_FACETS)
        }
        search = params.get("q", "").strip()[:MAX_SEARCH]
        variables = {"search": search or None, **{f: chosen[f] or None for f in GATEWAY_FACETS}}
        result = await reader.run(documents.CATALOG, variables)
        if result.data is None:
            raise PageError(result.status, result.message)
        listed = result.data["products"]
        judged = {
            "freshness": freshness_of,
            "quality": lambda p: str(p["qualityStatus"]),
            "access": access_of,
        }
        counts = {name: Counter(judge(p) for p in listed) for name, judge in judged.items()}
        shown = [
            p for p in listed if all(not chosen[n] or judge(p) == chosen[n] for n, judge in judged.items())
        ]
        facets = result.data["productFacets"]
        groups = [
            ("department", "Department", [(v["value"], v["count"]) for v in facets["departments"]]),
            (
                "classification",
                "Classification",
                [(v["value"], v["count"]) for v in facets["classifications"]],
            ),
            ("tag", "Tag", [(v["value"], v["count"]) for v in facets["tags"]]),
            ("freshness", "Freshness", sorted(counts["freshness"].items())),
            ("quality", "Quality", sorted(counts["quality"].items())),
            (
                "access",
                "What I can do",
                [(k, counts["access"][k]) for k in ACCESS_LABELS if counts["access"][k]],
            ),
        ]
        kept = {"q": search, **chosen}

        def link(**changes: str) -> str:
            merged = {**kept, **changes}
            return "?" + urlencode({k: v for k, v in merged.items() if v}) if any(merged.values()) else "?"

        return self.pages.render(
            request,
            "catalog.html",
            products=shown,
            total=len(listed),
            search=search,
            chosen=chosen,
            groups=groups,
            access_labels=ACCESS_LABELS,
            link=link,
            freshness_of=freshness_of,
            access_of=access_of,
        )
