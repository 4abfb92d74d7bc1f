"""The product page's data tabs: Data (governed preview), Chart, Map and Download.

All four read the same selection (selection.py: filters, sort, page) through the product's own
rows and aggregate fields, so what a chart, a map or a download shows is what the Data tab shows:
the masks and the row filter of the user's `read` (or `export`) decision, applied by the gateway,
and marked on the page from `extensions.governance`.
"""

from __future__ import annotations

import json
import shlex
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from gateway.query import BIGINT, DATE, DATETIME, FLOAT, INT, STRING
from portal import charts, documents
from portal.assets import Assets
from portal.backend import PageError, Reader, Result
from portal.documents import Names
from portal.pages import Pages
from portal.selection import FILTER_ROWS, OPERATORS, PAGE_SIZES, Selection, kinds_of
from portal.tabs import Tab, render_tab

CHART_GROUPS = 200
MAP_POINTS = 1000
EXPORT_FORMATS = (("csv", "CSV"), ("parquet", "Parquet"), ("json", "JSON lines"))
BUCKETS = ("day", "week", "month", "quarter", "year")
NUMERIC = {INT, BIGINT, FLOAT}


def connection(result: Result, names: Names, field: str | None = None) -> dict[str, Any] | None:
    """The product field's value in `result` (None when refused or absent)."""
    department = (result.data or {}).get(names.department_field) or {}
    return department.get(field or names.product_field)


def governance(result: Result, product: dict[str, Any]) -> dict[str, Any]:
    """What the gateway applied to this read: `maskedColumns` (column -> mask), `rowFilter`."""
    return result.governance.get(product["name"]) or {}


class DataTabs:
    def __init__(self, pages: Pages, assets: Assets) -> None:
        self.pages = pages
        self.assets = assets

    def tabs(self) -> dict[str, Tab]:
        return {"data": self.data, "chart": self.chart, "map": self.map, "download": self.download}

    # -- Data ------------------------------------------------------------------------------------

    async def data(self, request: Request, reader: Reader, page: dict[str, Any]) -> Response:
        product = page["product"]
        names, selection = Names.of(product), Selection.from_params(request.query_params)
        kinds = kinds_of(product["columns"])
        variables = {
            "where": selection.where(kinds),
            "orderBy": selection.order_by(),
            "first": selection.first,
            "after": selection.after,
        }
        result = await reader.run(documents.rows_document(names), variables)
        rows = connection(result, names)
        applied = governance(result, product)
        blanks = max(1, FILTER_ROWS - len(selection.filters))
        return render_tab(
            self.pages,
            request,
            "data",
            page,
            result.status,
            rows=rows,
            table=_table(product, rows, applied, selection) if rows else None,
            applied=applied,
            error=result.message,
            selection=selection,
            filter_lines=[*selection.filters, *([None] * blanks)],
            operators=OPERATORS,
            page_sizes=PAGE_SIZES,
        )

    # -- Chart -----------------------------------------------------------------------------------

    async def chart(self, request: Request, reader: Reader, page: dict[str, Any]) -> Response:
        product = page["product"]
        names, selection = Names.of(product), Selection.from_params(request.query_params)
        params, columns = request.query_params, _unmasked(product)
        kinds = kinds_of(product["columns"])
        groupable = [c for c in columns if kinds[c["field"]] in (STRING, DATE, DATETIME, INT, BIGINT)]
        numbers = [c for c in columns if kinds[c["field"]] in NUMERIC]
        group = _pick(groupable, params.get("group"), _default_group(groupable, kinds))
        measure = _pick(numbers, params.get("measure"), numbers[0] if numbers else None)
        metric = str(params.get("metric")) if params.get("metric") in documents.METRICS else "count"
        if metric != "count" and measure is None:
            metric = "count"
        unit = str(params.get("unit")) if params.get("unit") in BUCKETS else "month"
        temporal = group is not None and kinds[group["field"]] in (DATE, DATETIME)
        mark = (
            str(params.get("mark")) if params.get("mark") in charts.MARKS else ("line" if temporal else "bar")
        )
        variables: dict[str, Any] = {"where": selection.where(kinds), "first": CHART_GROUPS}
        if group is not None and temporal:
            variables["bucket"] = {"column": group["name"].upper(), "unit": unit.upper()}
        elif group is not None:
            variables["groupBy"] = [group["name"].upper()]
        if metric != "count" and measure is not None:
            variables["measure"] = measure["name"].upper()
        result = await reader.run(documents.aggregate_document(names, metric), variables)
        aggregate = connection(result, names, f"{names.product_field}Aggregate")
        points = _points(aggregate, group, temporal, metric)
        y_title = "rows" if metric == "count" else f"{metric} of {measure['name'] if measure else ''}"
        x_title = (group["name"] if group else "all rows") + (f" (by {unit})" if temporal else "")
        title = f"{product['name']}: {y_title} by {x_title}"
        spec = charts.group_chart(points, x_title, y_title, mark, temporal, title) if points else None
        return render_tab(
            self.pages,
            request,
            "chart",
            page,
            result.status,
            spec=spec,
            points=points,
            more=bool(aggregate and aggregate["hasMoreGroups"]),
            error=result.message,
            applied=governance(result, product),
            selection=selection,
            choice={"group": group, "measure": measure, "metric": metric, "unit": unit, "mark": mark},
            groupable=groupable,
            numbers=numbers,
            buckets=BUCKETS,
            marks=charts.MARKS,
            x_title=x_title,
            y_title=y_title,
            title=title,
            vega=True,
        )

    # -- Map -------------------------------------------------------------------------------------

    async def map(self, request: Request, reader: Reader, page: dict[str, Any]) -> Response:
        product = page["product"]
        names, selection = Names.of(product), Selection.from_params(request.query_params)
        by_name = {c["name"]: c for c in product["columns"]}
        if "district" not in by_name and not {"latitude", "longitude"} <= set(by_name):
            raise PageError(404, "This product has no district or coordinates to map.")
        where = selection.where(kinds_of(product["columns"]))
        values: dict[str, float] = {}
        status, errors, applied = 200, [], {}
        if "district" in by_name:
            variables = {"where": where, "groupBy": ["DISTRICT"], "first": CHART_GROUPS}
            result = await reader.run(documents.aggregate_document(names, "count"), variables)
            aggregate = connection(result, names, f"{names.product_field}Aggregate") or {"groups": []}
            values = {str(g["key"][by_name["district"]["field"]]): g["count"] for g in aggregate["groups"]}
            status, errors, applied = result.status, [result.message], governance(result, product)
        points: list[dict[str, float]] = []
        if {"latitude", "longitude"} <= set(by_name):
            lat, lon = by_name["latitude"]["field"], by_name["longitude"]["field"]
            variables = {"where": where, "first": MAP_POINTS}
            result = await reader.run(documents.rows_document(names, (lat, lon)), variables)
            rows = connection(result, names) or {"nodes": []}
            points = [
                {"latitude": r[lat], "longitude": r[lon]}
                for r in rows["nodes"]
                if r[lat] is not None and r[lon] is not None
            ]
            status, applied = max(status, result.status), applied or governance(result, product)
            errors.append(result.message)
        title = f"{product['name']}: rows per district" + (" and locations" if points else "")
        spec = charts.district_map(self.assets.url("districts.geojson"), values, "rows", points, title)
        return render_tab(
            self.pages,
            request,
            "map",
            page,
            status,
            spec=spec if values or points else None,
            values=sorted(values.items()),
            points=len(points),
            error="; ".join(e for e in errors if e),
            applied=applied,
            selection=selection,
            title=title,
            vega=True,
        )

    # -- Download --------------------------------------------------------------------------------

    async def download(self, request: Request, reader: Reader, page: dict[str, Any]) -> Response:
        product = page["product"]
        names, selection = Names.of(product), Selection.from_params(request.query_params)
        kinds = kinds_of(product["columns"])
        query = urlencode(selection.export_params(kinds))
        origin = str(request.base_url).rstrip("/")
        exports = [
            (label, f"/exports/{product['name']}.{fmt}" + (f"?{query}" if query else ""), fmt)
            for fmt, label in EXPORT_FORMATS
        ]
        document = documents.rows_document(names)
        variables = {"where": selection.where(kinds), "orderBy": selection.order_by(), "first": 100}
        body = json.dumps({"query": document, "variables": variables}, separators=(",", ":"))
        token = f"TOKEN=$(civicmesh token {shlex.quote(reader.subject)} | tail -n 1)"
        auth = shlex.quote("Authorization: Bearer ") + '"$TOKEN"'
        curl_export = f"curl -fsS -H {auth} -o {product['name']}.csv {shlex.quote(origin + exports[0][1])}"
        curl_graphql = (
            f"curl -fsS -H {auth} -H 'Content-Type: application/json' "
            f"--data {shlex.quote(body)} {shlex.quote(origin + '/graphql')}"
        )
        return render_tab(
            self.pages,
            request,
            "download",
            page,
            exports=exports,
            selection=selection,
            document=document.strip(),
            variables=json.dumps(variables, indent=2),
            commands=[token, curl_export, curl_graphql],
        )


def _table(
    product: dict[str, Any], rows: dict[str, Any], applied: dict[str, Any], selection: Selection
) -> dict[str, Any]:
    """The Data tab's table, shaped here rather than in the template (a page of 100 rows of 20
    columns is thousands of lookups, which Jinja2 makes slow): headers with their mask kind, sort
    state and sort link, and per row (masked, value) per column."""
    masks = applied.get("maskedColumns") or {}
    columns = product["columns"]
    headers = []
    for c in columns:
        current = selection.sort == c["field"]
        direction = "DESC" if current and selection.direction == "ASC" else "ASC"
        headers.append(
            {
                "name": c["name"],
                "mask": masks.get(c["name"]),
                "sort": ("descending" if selection.direction == "DESC" else "ascending") if current else None,
                "query": selection.query(sort=c["field"], direction=direction, after=None),
            }
        )
    pairs = [(c["name"] in masks, c["field"]) for c in columns]
    body = [[(masked, node.get(field)) for masked, field in pairs] for node in rows["nodes"]]
    return {"headers": headers, "rows": body}


def _unmasked(product: dict[str, Any]) -> list[dict[str, Any]]:
    """Columns the user may group, filter or sort by: the gateway refuses masked ones."""
    return [c for c in product["columns"] if not c["masked"]]


def _pick(columns: list[dict[str, Any]], field: str | None, default: dict[str, Any] | None) -> Any:
    return next((c for c in columns if c["field"] == field), default) if field else default


def _default_group(columns: list[dict[str, Any]], kinds: dict[str, str]) -> dict[str, Any] | None:
    """The first text column that is not an identifier, else the first date, else any."""
    text = [c for c in columns if kinds[c["field"]] == STRING and not c["name"].endswith("_id")]
    dates = [c for c in columns if kinds[c["field"]] in (DATE, DATETIME)]
    candidates = text or dates or columns
    return candidates[0] if candidates else None


def _points(
    aggregate: dict[str, Any] | None, group: dict[str, Any] | None, temporal: bool, metric: str
) -> list[dict[str, Any]]:
    if not aggregate:
        return []
    out = []
    for g in aggregate["groups"]:
        key = g["key"]
        x = key["bucket"] if temporal else (key[group["field"]] if group else "all rows")
        out.append({"x": "(empty)" if x is None else x, "y": g["count"] if metric == "count" else g["value"]})
    return out
