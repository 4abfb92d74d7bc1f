"""District boundaries: a valid GeoJSON tiling of the city, and every generated point lies inside
the polygon of the district its row names."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import duckdb
import pytest

from civicmesh import synthetic
from civicmesh.synthetic import districts
from portal.assets import for_d3_geo

# (department/table, its district column) for every landing table with coordinates
LOCATED = ("public_works/service_requests", "transportation/collisions")


def _inside(lon: float, lat: float, ring: list[list[float]]) -> bool:
    """Even-odd ray casting on the ring itself (no knowledge of the grid that made it)."""
    inside = False
    for (x1, y1), (x2, y2) in pairwise(ring):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairwise(ring)) / 2


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads(districts.GEOJSON_PATH.read_text(encoding="utf-8"))


def test_shipped_file_is_what_the_generator_constants_give(shipped: dict) -> None:
    assert districts.GEOJSON_PATH.read_text(encoding="utf-8") == districts.render()
    assert shipped == districts.district_boundaries()


def test_nine_closed_counter_clockwise_polygons_that_tile_the_city(shipped: dict) -> None:
    assert shipped["type"] == "FeatureCollection"
    codes = [f["properties"]["district"] for f in shipped["features"]]
    assert codes == [f"D{i}" for i in range(1, 10)] == [f["id"] for f in shipped["features"]]
    rings = [f["geometry"]["coordinates"][0] for f in shipped["features"]]
    for feature, ring in zip(shipped["features"], rings, strict=True):
        assert feature["geometry"]["type"] == "Polygon" and len(feature["geometry"]["coordinates"]) == 1
        assert ring[0] == ring[-1] and len(ring) >= 4
        assert _signed_area(ring) > 0  # RFC 7946 §3.1.6: exterior rings are counter-clockwise
    # Tiling: the areas add up to the bounding box, and no two cell centres share a cell.
    xs = [x for ring in rings for x, _ in ring]
    ys = [y for ring in rings for _, y in ring]
    box = (max(xs) - min(xs)) * (max(ys) - min(ys))
    assert sum(_signed_area(r) for r in rings) == pytest.approx(box)
    for i, ring in enumerate(rings):
        cx, cy = (sum(x for x, _ in ring[:-1]) / 4, sum(y for _, y in ring[:-1]) / 4)
        assert [_inside(cx, cy, other) for other in rings] == [j == i for j in range(9)]


@pytest.mark.parametrize("table", LOCATED)
def test_every_generated_point_lies_in_its_districts_polygon(
    tmp_path_factory: pytest.TempPathFactory, shipped: dict, table: str
) -> None:
    city = synthetic.generate(tmp_path_factory.mktemp("city"), rows=20_000, seed=7)
    rows = duckdb.sql(
        f"SELECT district, longitude, latitude FROM read_parquet('{Path(city[table])}')"
    ).fetchall()
    polygons = {f["properties"]["district"]: f["geometry"]["coordinates"][0] for f in shipped["features"]}
    outside = [r for r in rows if not _inside(r[1], r[2], polygons[r[0]])]
    assert len(rows) > 100 and not outside, outside[:5]
    assert len({r[0] for r in rows}) == 9


def test_d3_geo_orientation_reverses_every_ring_and_keeps_the_rest(shipped: dict) -> None:
    flipped = for_d3_geo(shipped)
    for mine, theirs in zip(shipped["features"], flipped["features"], strict=True):
        assert _signed_area(theirs["geometry"]["coordinates"][0]) < 0
        assert theirs["geometry"]["coordinates"][0] == mine["geometry"]["coordinates"][0][::-1]
        assert {k: v for k, v in theirs.items() if k != "geometry"} == {
            k: v for k, v in mine.items() if k != "geometry"
        }
    assert shipped == districts.district_boundaries()  # the input is not changed
