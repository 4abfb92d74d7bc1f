"""District boundaries of the synthetic city: a GeoJSON FeatureCollection of D1..D9.

Each district is the grid cell around its centre in `common` (the generator's own constants, so
the map and the data cannot drift apart): cells tile the city's box with no gap or overlap, and
`common.locations` keeps every generated point strictly inside its district's cell.

Format: RFC 7946 — coordinates are [longitude, latitude] in WGS 84, exterior rings counter-clockwise
(§3.1.6), first position repeated last. Each feature has `id` and `properties.district` = the code
used in the data (`D1`..`D9`). The portal's `static/districts.geojson` is this function's output,
written by `python -m civicmesh.synthetic.districts` (a test keeps the two equal). Maps drawn with
d3-geo (Vega) need the rings the other way round: `portal.assets.for_d3_geo`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from civicmesh.synthetic import common
from portal.assets import DISTRICTS_FILE as GEOJSON_PATH  # the file the portal serves


def _cell(lat: float, lon: float) -> list[list[float]]:
    """The closed, counter-clockwise ring of the cell centred on (lat, lon)."""
    south, north = lat - common.CELL_LAT / 2, lat + common.CELL_LAT / 2
    west, east = lon - common.CELL_LON / 2, lon + common.CELL_LON / 2
    corners = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    return [[round(x, 6), round(y, 6)] for x, y in corners]


def district_boundaries() -> dict[str, Any]:
    """The FeatureCollection (a JSON-ready dict), one Polygon feature per district code."""
    features = [
        {
            "type": "Feature",
            "id": str(code),
            "properties": {"district": str(code), "name": f"District {str(code)[1:]}"},
            "geometry": {"type": "Polygon", "coordinates": [_cell(float(lat), float(lon))]},
        }
        for code, lat, lon in zip(common.DISTRICTS, common.DISTRICT_LAT, common.DISTRICT_LON, strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def render() -> str:
    """The file's exact text: one feature per line, trailing newline."""
    features = ",\n".join(json.dumps(f) for f in district_boundaries()["features"])
    return f'{{"type": "FeatureCollection", "features": [\n{features}\n]}}\n'


if __name__ == "__main__":
    GEOJSON_PATH.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {GEOJSON_PATH}\n")
