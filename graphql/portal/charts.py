"""Vega-Lite specifications, built on the server from governed aggregate results.

The browser only draws them (static/portal.js with the pinned vega-embed, CSP-safe options); every
value in a spec came from a governed GraphQL response, so a chart never shows more than the table
beside it (which is also its fallback without JavaScript). Schema: Vega-Lite v6
(https://vega.github.io/vega-lite/docs/). Colours: marks #1f5f99 (7.0:1 on white), axes #1b1f23.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
MARK_COLOUR = "#1f5f99"
INK = "#1b1f23"
OUT_OF_SCOPE = "#d9dde1"  # districts with no value for this caller
CONFIG = {
    "font": "system-ui, sans-serif",
    "axis": {"labelColor": INK, "titleColor": INK, "domainColor": INK, "tickColor": INK},
    "legend": {"labelColor": INK, "titleColor": INK},
    "title": {"color": INK},
    "view": {"stroke": None},
}
MARKS = ("bar", "line")


def group_chart(
    points: Sequence[dict[str, Any]], x_title: str, y_title: str, mark: str, temporal: bool, title: str
) -> dict[str, Any]:
    """A bar or line chart of `points` ({"x", "y"}); x is a date (temporal) or a category."""
    x_type = "temporal" if temporal else "nominal"
    x: dict[str, Any] = {"field": "x", "type": x_type, "title": x_title}
    if not temporal:
        x["sort"] = None  # keep the gateway's order
        x["axis"] = {"labelAngle": -40, "labelLimit": 160}
    return {
        "$schema": SCHEMA,
        "description": title,
        "title": title,
        "width": 640,
        "height": 320,
        "data": {"values": list(points)},
        "mark": {
            "type": mark,
            "color": MARK_COLOUR,
            "tooltip": True,
            **({"point": True} if mark == "line" else {}),
        },
        "encoding": {"x": x, "y": {"field": "y", "type": "quantitative", "title": y_title}},
        "config": CONFIG,
    }


def district_map(
    districts_url: str,
    values: dict[str, float],
    value_title: str,
    points: Sequence[dict[str, float]],
    title: str,
) -> dict[str, Any]:
    """A choropleth of the shipped district boundaries (`properties.district`), coloured by
    `values` (district -> number; districts without one are drawn grey), and `points`
    ({"longitude", "latitude"}) on top. No tiles: the boundaries are the whole base map."""
    geo = {"url": districts_url, "format": {"type": "json", "property": "features"}}
    # the base map is decorative (no ARIA role): the layers above carry the data
    layers = [{"data": geo, "mark": {"type": "geoshape", "fill": OUT_OF_SCOPE, "stroke": INK, "aria": False}}]
    if values:
        layers.append(_choropleth(geo, values, value_title))
    if points:
        layers.append(_points(points))
    return {
        "$schema": SCHEMA,
        "description": title,
        "title": title,
        "width": 480,
        "height": 420,
        "projection": {"type": "mercator"},
        "layer": layers,
        "config": CONFIG,
    }


def _choropleth(geo: dict[str, Any], values: dict[str, float], value_title: str) -> dict[str, Any]:
    """The districts that have a value, coloured by it (a lookup from the boundaries' features)."""
    table = [{"district": d, "value": v} for d, v in sorted(values.items())]
    lookup = {"data": {"values": table}, "key": "district", "fields": ["value"]}
    return {
        "data": geo,
        "transform": [{"lookup": "properties.district", "from": lookup}, {"filter": "isValid(datum.value)"}],
        "mark": {"type": "geoshape", "stroke": INK, "strokeWidth": 1},
        "encoding": {
            "color": {
                "field": "value",
                "type": "quantitative",
                "title": value_title,
                "legend": {"format": ",.4~g"},
            },
            "tooltip": [
                {"field": "properties.district", "type": "nominal", "title": "District"},
                {"field": "value", "type": "quantitative", "title": value_title},
            ],
        },
    }


def _points(points: Sequence[dict[str, float]]) -> dict[str, Any]:
    return {
        "data": {"values": list(points)},
        "mark": {"type": "circle", "size": 18, "color": INK, "opacity": 0.6},
        "encoding": {
            "longitude": {"field": "longitude", "type": "quantitative"},
            "latitude": {"field": "latitude", "type": "quantitative"},
        },
    }
