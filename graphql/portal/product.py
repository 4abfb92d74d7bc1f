"""The product page: `GET /products/<department.product>[/<tab>]`, one URL per tab.

Every tab first runs the governed `product(name:)` query: a product the user may not discover
and one that does not exist both come back null, and both get the very same 404 page. Tabs:
About (default), Schema, Access here; Data, Chart, Map, Download in data_tabs.py; Lineage below.

| tab | reads |
|---|---|
| about | `product` with quality, snapshots, integrity; sibling versions (`products(department:)`) |
| schema | `product.columns` (the mask that applies to the user: `masked`) |
| lineage | `lineage(product, column, UPSTREAM/DOWNSTREAM)`: the `lineage` right; readers for auditors |
| access | `product.myAccess`, `accessRequests`; why: `policies.explain` (as `civicmesh policy explain`) |
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.errors import NOT_AVAILABLE
from policies.decision import ACTIONS
from policies.explain import explain
from policies.grants import MAX_DAYS, REQUESTABLE_ACTIONS
from portal import documents, lineage_svg
from portal.backend import PageError, Reader, backend
from portal.pages import Pages, base_path, flash
from portal.tabs import Tab, render_tab

NAME = re.compile(r"^[A-Za-z0-9_]{1,100}\.[A-Za-z0-9_]{1,100}$")
LINEAGE_DEPTH = 4


async def load(reader: Reader, name: str, document: str = documents.PRODUCT) -> tuple[dict[str, Any], Any]:
    """The product as `product(name:)` returns it (and the whole result); PageError 404 with the
    gateway's one message for a hidden or a missing product."""
    if not NAME.match(name):
        raise PageError(404, NOT_AVAILABLE)
    variables: dict[str, Any] = {"name": name}
    if document is documents.ABOUT:
        variables["department"] = name.partition(".")[0]
    result = await reader.run(document, variables)
    product = (result.data or {}).get("product")
    if product is None:
        if result.data is None:
            raise PageError(result.status, result.message)
        raise PageError(404, NOT_AVAILABLE)
    return product, result


class ProductPages:
    def __init__(self, pages: Pages, data_tabs: dict[str, Tab]) -> None:
        self.pages = pages
        self.tabs: dict[str, Tab] = {
            "about": self.about,
            "schema": self.schema,
            "lineage": self.lineage,
            "access": self.access,
            **data_tabs,
        }

    def routes(self) -> list[Route]:
        return [
            Route("/products/{name}", self.pages.page(self.show), methods=["GET"], name="portal_product"),
            Route("/products/{name}/{tab}", self.pages.page(self.show), methods=["GET"], name="portal_tab"),
            Route("/products/{name}/access", self.pages.page(self.request_access), methods=["POST"]),
        ]

    async def show(self, request: Request, reader: Reader) -> Response:
        tab = request.path_params.get("tab", "about")
        handler = self.tabs.get(tab)
        if handler is None:  # judged before the product is read: the answer says nothing about it
            raise PageError(404, "There is no such page.")
        name = request.path_params["name"]
        if tab == "about":
            product, result = await load(reader, name, documents.ABOUT)
            return await self.about(request, reader, {"product": product, "result": result})
        product, _ = await load(reader, name)
        return await handler(request, reader, {"product": product})

    def render(
        self, request: Request, tab: str, page: dict[str, Any], status: int = 200, **context: Any
    ) -> Response:
        return render_tab(self.pages, request, tab, page, status, **context)

    # -- About, Schema ---------------------------------------------------------------------------

    async def about(self, request: Request, reader: Reader, page: dict[str, Any]) -> Response:
        product = page["product"]
        data = page["result"].data
        base = product["product"]
        version = re.compile(rf"^{re.escape(base.split('_v')[0])}(_v\d+)?$")
        versions = sorted(p["name"] for p in data["siblings"] if version.match(p["product"]))
        return self.render(request, "about", page, versions=versions if len(versions) > 1 else [])

    async def schema(self, request: Request, reader: Reader, page: dict[str, Any]) -> Response:
        return self.render(request, "schema", page)

    # -- Lineage ---------------------------------------------------------------------------------

    async def lineage(self, request: Request, reader: Reader, page: dict[str, Any]) -> Response:
        product = page["product"]
        column = request.query_params.get("column") or None
        walks: dict[str, Any] = {}
        for direction in ("UPSTREAM", "DOWNSTREAM"):  # one walk per request: a refusal is one record
            variables = {
                "name": product["name"],
                "column": column,
                "direction": direction,
                "depth": LINEAGE_DEPTH,
            }
            result = await reader.run(documents.LINEAGE, variables)
            walks[direction.lower()] = (result.data or {}).get("lineage")
            if walks[direction.lower()] is None:
                break
        picture = lineage_svg.layout(walks.get("upstream"), walks.get("downstream"))
        return self.render(
            request,
            "lineage",
            page,
            result.status,
            walks=walks,
            picture=picture,
            column=column,
            error=result.message,
            sizes={"w": lineage_svg.BOX_W, "h": lineage_svg.BOX_H},
        )

    # -- Access: my rights, why, and the request form --------------------------------------------

    async def access(
        self, request: Request, reader: Reader, page: dict[str, Any], status: int = 200, error: str = ""
    ) -> Response:
        product = page["product"]
        entry = backend(request).state.entries.get(product["name"])
        engine = backend(request).policy
        why = {}
        if entry is not None:  # the explanation `civicmesh policy explain` prints, per action
            why = {a: explain(engine, reader.subject, entry.spec, a) for a in ACTIONS}
        result = await reader.run(documents.REQUESTS)
        mine = [
            r
            for r in (result.data or {}).get("accessRequests") or ()
            if r["product"] == product["name"] and r["subject"] == reader.subject
        ]
        requestable = [a for a in product["myAccess"]["canRequest"] if a in REQUESTABLE_ACTIONS]
        return self.render(
            request,
            "access",
            page,
            status,
            why=why,
            actions=ACTIONS,
            mine=mine,
            requestable=requestable,
            max_days=MAX_DAYS,
            error=error,
            form=page.get("form", {}),
        )

    async def request_access(self, request: Request, reader: Reader) -> Response:
        """POST: the `requestAccess` mutation; back to the Access tab (303), or the tab with the
        gateway's refusal (its 4xx status and message)."""
        name = request.path_params["name"]
        product, _ = await load(reader, name)
        form = await request.form()
        days_text = str(form.get("days") or "")
        values = {
            "product": product["name"],
            "action": str(form.get("action") or "").upper(),
            "purpose": str(form.get("purpose") or ""),
            "days": int(days_text) if days_text.isdigit() and len(days_text) < 6 else -1,
        }
        result = await reader.run(documents.REQUEST_ACCESS, values)
        made = (result.data or {}).get("requestAccess")
        page = {
            "product": product,
            "form": {k: str(form.get(k) or "") for k in ("action", "purpose", "days")},
        }
        if made is None:
            return await self.access(request, reader, page, result.status, result.message)
        flash(
            request,
            f"Request #{made['id']} for {made['action']} on {made['product']} was sent to its owners.",
        )
        url = f"{base_path(request)}/products/{product['name']}/access"
        return RedirectResponse(url, status_code=303)
