"""transportation: hourly traffic counts per sensor and the collision register."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from civicmesh.synthetic import common as c

SENSORS_PER_DISTRICT = 2
# Weekday traffic has two rush hours; weekends one broad midday hump.
WEEKDAY_HOURS = np.array(
    [2, 1, 1, 1, 2, 5, 12, 20, 22, 14, 11, 11, 12, 12, 12, 14, 19, 22, 16, 11, 8, 6, 4, 3], float
)
WEEKEND_HOURS = np.array(
    [4, 3, 2, 1, 1, 2, 3, 5, 8, 11, 13, 14, 14, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4], float
)
SEVERITIES = np.array(["property_damage", "minor_injury", "serious_injury", "fatal"])
WEATHER = np.array(["clear", "rain", "snow", "fog"])
ROAD = np.array(["dry", "wet", "icy"])


def hourly_points(rows: int) -> int:
    """Hours of sensor history: grows with `--rows`, capped at the two-year period."""
    return int(np.clip(rows // 40, 48, 730 * 24))


def traffic_counts(rng: np.random.Generator, n: int, period: c.Period) -> Iterator[pa.Table]:
    hours = n // (len(c.DISTRICTS) * SENSORS_PER_DISTRICT)
    sensors = len(c.DISTRICTS) * SENSORS_PER_DISTRICT
    first_hour = period.days * 24 - hours
    hour_index = np.arange(first_hour, period.days * 24)
    weekday = period.weekday()[hour_index // 24]
    profile = np.where(weekday >= 5, WEEKEND_HOURS[hour_index % 24], WEEKDAY_HOURS[hour_index % 24])
    sensor_base = rng.lognormal(np.log(40), 0.5, sensors)  # arterials vs side streets
    expected = sensor_base[:, None] * profile[None, :]  # (sensor, hour)
    vehicles = rng.poisson(expected)
    congestion = expected / expected.max(axis=1, keepdims=True)
    speed = np.round(np.clip(rng.normal(52 - 25 * congestion, 4), 5, None), 1)
    sensor = np.repeat(np.arange(sensors), hours)
    district = sensor // SENSORS_PER_DISTRICT
    sensor_ids = c.join(
        "TS-", c.take(c.DISTRICTS, district), "-", c.padded(sensor % SENSORS_PER_DISTRICT + 1, 2)
    )
    yield pa.table(
        {
            "sensor_id": sensor_ids,
            "district": c.take(c.DISTRICTS, district),
            "counted_at": c.timestamps(period.start_us + np.tile(hour_index, sensors) * c.US_PER_HOUR),
            "vehicle_count": pa.array(vehicles.ravel().astype(np.int32)),
            "heavy_vehicle_count": pa.array(rng.binomial(vehicles, 0.07).ravel().astype(np.int32)),
            "avg_speed_kmh": pa.array(speed.ravel()),
        }
    )


def collisions(rng: np.random.Generator, n: int, period: c.Period) -> Iterator[pa.Table]:
    winter = c.seasonal(period.day_of_year(), 15, 0.3)  # ice and dark evenings
    day = np.sort(c.choice(rng, n, winter))
    hour = c.choice(rng, n, WEEKDAY_HOURS)
    occurred = period.start_us + day * c.US_PER_DAY + hour * c.US_PER_HOUR
    occurred = np.sort(occurred + rng.integers(0, 3600, n) * 1_000_000)
    severity = c.choice(rng, n, (70, 22, 7, 1))
    injuries = np.where(severity == 0, 0, 1 + rng.poisson(0.4 * severity))
    fatalities = np.where(severity == 3, 1 + rng.poisson(0.1, n), 0)
    in_winter = winter[day] > 1.15
    weather = np.where(in_winter, c.choice(rng, n, (55, 15, 25, 5)), c.choice(rng, n, (75, 20, 0, 5)))
    road = np.where(weather == 2, 2, np.where(weather == 1, 1, c.choice(rng, n, (95, 5, 0))))
    district = c.choice(rng, n, c.DISTRICT_WEIGHTS)
    lat, lon = c.locations(rng, district, spread=0.025)
    yield pa.table(
        {
            "collision_id": c.ids("COL-", 1, n, 7),
            "occurred_at": c.timestamps(occurred),
            "district": c.take(c.DISTRICTS, district),
            "latitude": lat,
            "longitude": lon,
            "severity": c.take(SEVERITIES, severity),
            "vehicles": pa.array(c.choice(rng, n, (15, 65, 15, 5)).astype(np.int32) + 1),
            "injuries": pa.array(injuries.astype(np.int32)),
            "fatalities": pa.array(fatalities.astype(np.int32)),
            "weather": c.take(WEATHER, weather),
            "road_condition": c.take(ROAD, road),
        }
    )


TRAFFIC_SCHEMA = pa.schema(
    [
        ("sensor_id", pa.string()),
        ("district", pa.string()),
        ("counted_at", pa.timestamp("us")),
        ("vehicle_count", pa.int32()),
        ("heavy_vehicle_count", pa.int32()),
        ("avg_speed_kmh", pa.float64()),
    ]
)
COLLISION_SCHEMA = pa.schema(
    [
        ("collision_id", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("district", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("severity", pa.string()),
        ("vehicles", pa.int32()),
        ("injuries", pa.int32()),
        ("fatalities", pa.int32()),
        ("weather", pa.string()),
        ("road_condition", pa.string()),
    ]
)
TABLES = (
    c.TableSpec(
        "transportation",
        "traffic_counts",
        TRAFFIC_SCHEMA,
        lambda rows: hourly_points(rows) * len(c.DISTRICTS) * SENSORS_PER_DISTRICT,
        traffic_counts,
    ),
    c.TableSpec(
        "transportation",
        "collisions",
        COLLISION_SCHEMA,
        lambda rows: int(np.clip(rows // 20, 200, 200_000)),
        collisions,
    ),
)
