"""environment.air_quality: one monitoring station per district, hourly pollutant readings."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from civicmesh.synthetic import common as c
from civicmesh.synthetic.transportation import WEEKDAY_HOURS, hourly_points

SCHEMA = pa.schema(
    [
        ("station_id", pa.string()),
        ("district", pa.string()),
        ("measured_at", pa.timestamp("us")),
        ("pm25", pa.float64()),
        ("no2", pa.float64()),
        ("o3", pa.float64()),
    ]
)


def air_quality(rng: np.random.Generator, n: int, period: c.Period) -> Iterator[pa.Table]:
    stations = len(c.DISTRICTS)
    hours = n // stations
    hour_index = np.arange(period.days * 24 - hours, period.days * 24)
    doy = period.day_of_year()[hour_index // 24]
    hod = hour_index % 24
    # Downtown stations (low district numbers) sit next to more traffic.
    station_factor = np.linspace(1.3, 0.8, stations)[:, None]
    traffic = (WEEKDAY_HOURS[hod] / WEEKDAY_HOURS.mean())[None, :]
    size = (stations, hours)
    pm25 = rng.lognormal(np.log(8 * station_factor * c.seasonal(doy, 15, 0.35)), 0.45, size)  # inversions
    no2 = rng.lognormal(np.log(14 * station_factor * traffic**0.6), 0.35, size)  # follows rush hour
    sun = np.clip(np.sin(np.pi * (hod - 6) / 14), 0, None)[None, :]
    o3 = rng.lognormal(np.log(18 + 30 * sun * c.seasonal(doy, 190, 0.6)), 0.25, size)  # sunny afternoons
    outage = rng.random((3, stations * hours)) < 0.01  # sensors drop out now and then
    station = np.repeat(np.arange(stations), hours)
    yield pa.table(
        {
            "station_id": c.join("AQ-", c.take(c.DISTRICTS, station)),
            "district": c.take(c.DISTRICTS, station),
            "measured_at": c.timestamps(period.start_us + np.tile(hour_index, stations) * c.US_PER_HOUR),
            "pm25": pa.array(np.round(pm25.ravel(), 1), mask=outage[0]),
            "no2": pa.array(np.round(no2.ravel(), 1), mask=outage[1]),
            "o3": pa.array(np.round(o3.ravel(), 1), mask=outage[2]),
        }
    )


TABLES = (
    c.TableSpec(
        "environment", "air_quality", SCHEMA, lambda rows: hourly_points(rows) * len(c.DISTRICTS), air_quality
    ),
)
