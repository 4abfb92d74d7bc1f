"""What every tab of the product page shares: the tab list and how a tab is rendered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from portal.backend import Reader
from portal.pages import Pages

TABS = (
    ("about", "About"),
    ("schema", "Schema"),
    ("data", "Data"),
    ("chart", "Chart"),
    ("map", "Map"),
    ("lineage", "Lineage"),
    ("download", "Download"),
    ("access", "Access"),
)

# A tab's handler: the request, the user's governed reads, and the page so far ({"product": ...}).
Tab = Callable[[Request, Reader, dict[str, Any]], Awaitable[Response]]


def has_map(product: dict[str, Any]) -> bool:
    """A district column (drawn on the shipped boundaries) or a latitude/longitude pair."""
    names = {c["name"] for c in product["columns"]}
    return "district" in names or {"latitude", "longitude"} <= names


def render_tab(
    pages: Pages, request: Request, tab: str, page: dict[str, Any], status: int = 200, **context: Any
) -> Response:
    """`templates/product_<tab>.html` with the product, the tab list and `context`."""
    product = page["product"]
    tabs = [(key, label) for key, label in TABS if key != "map" or has_map(product)]
    return pages.render(
        request,
        f"product_{tab}.html",
        status,
        product=product,
        tab=tab,
        tab_label=dict(TABS)[tab],
        tabs=tabs,
        **context,
    )
