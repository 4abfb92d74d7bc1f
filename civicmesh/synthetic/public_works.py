"""public_works.service_requests: the 311 queue, the largest table (scaled by `--rows`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from civicmesh.synthetic import common as c

# (category, seasonal peak day-of-year, amplitude, median response hours). Listed by frequency:
# weights fall off Zipf-like, so potholes and streetlights dominate as in every real 311 feed.
CATEGORIES = (
    ("pothole", 55, 0.7, 96.0),  # freeze-thaw: late winter
    ("streetlight_out", 350, 0.35, 72.0),  # long nights
    ("missed_collection", 0, 0.0, 24.0),
    ("graffiti", 190, 0.3, 120.0),
    ("illegal_dumping", 160, 0.25, 96.0),
    ("noise_complaint", 200, 0.6, 8.0),
    ("tree_maintenance", 220, 0.45, 168.0),  # summer storms
    ("sidewalk_damage", 75, 0.35, 240.0),
    ("abandoned_vehicle", 0, 0.0, 168.0),
    ("water_leak", 15, 0.4, 12.0),
    ("traffic_signal", 0, 0.0, 6.0),
    ("snow_removal", 20, 1.0, 18.0),
)
CATEGORY_NAMES = np.array([cat[0] for cat in CATEGORIES])
CHANNELS = np.array(["phone", "mobile_app", "web", "email", "walk_in"])
CHANNEL_WEIGHTS = (38, 27, 25, 5, 5)
PRIORITIES = np.array(["low", "medium", "high", "urgent"])
STATUSES = np.array(["closed", "open", "in_progress", "cancelled"])
URGENT_CATEGORIES = {"water_leak", "traffic_signal", "snow_removal"}
# Calls follow office hours: little at night, peaks mid-morning and mid-afternoon.
HOUR_WEIGHTS = np.array(
    [1, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 10, 11, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2], float
)
CHUNK_ROWS = 500_000

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("opened_at", pa.timestamp("us")),
        ("closed_at", pa.timestamp("us")),
        ("category", pa.string()),
        ("status", pa.string()),
        ("priority", pa.string()),
        ("channel", pa.string()),
        ("district", pa.string()),
        ("address", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("requester_name", pa.string()),
        ("requester_email", pa.string()),
        ("requester_phone", pa.string()),
    ]
)


def _daily_counts(rng: np.random.Generator, n: int, period: c.Period) -> np.ndarray:
    """Requests per (category, day): Zipf over categories, seasonal and weekday shape over days."""
    doy = period.day_of_year()
    weekday = np.where(period.weekday() >= 5, 0.65, 1.0)
    trend = np.linspace(0.9, 1.1, period.days)  # the city grows and 311 gets more popular
    zipf = c.zipf_weights(len(CATEGORIES), 1.1)
    per_category = rng.multinomial(n, zipf / zipf.sum())
    counts = np.zeros((len(CATEGORIES), period.days), dtype=np.int64)
    for k, (name, peak, amplitude, _) in enumerate(CATEGORIES):
        season = c.seasonal(doy, peak, amplitude)
        if name == "snow_removal":  # only when it snows: sharpen the winter peak to nothing in summer
            season = np.clip(season - 1.0, 0.0, None) ** 3 + 1e-4
        weights = season * weekday * trend
        counts[k] = rng.multinomial(per_category[k], weights / weights.sum())
    return counts


def _day_ranges(per_day: np.ndarray) -> Iterator[tuple[int, int]]:
    """Split the period into consecutive day ranges of about CHUNK_ROWS rows each."""
    start, acc = 0, 0
    for day, rows in enumerate(per_day):
        acc += rows
        if acc >= CHUNK_ROWS:
            yield start, day + 1
            start, acc = day + 1, 0
    if start < len(per_day):
        yield start, len(per_day)


def chunks(rng: np.random.Generator, n: int, period: c.Period) -> Iterator[pa.Table]:
    counts = _daily_counts(rng, n, period)
    medians = np.array([cat[3] for cat in CATEGORIES])
    next_id = 1
    # Chunks cover consecutive days and are sorted inside, so ids rise with opened_at overall.
    for d0, d1 in _day_ranges(counts.sum(axis=0)):
        block = counts[:, d0:d1].T.ravel()  # day-major
        category = np.repeat(np.tile(np.arange(len(CATEGORIES)), d1 - d0), block)
        day = np.repeat(np.repeat(np.arange(d0, d1), len(CATEGORIES)), block)
        m = len(category)
        hour = c.choice(rng, m, HOUR_WEIGHTS)
        opened = period.start_us + day * c.US_PER_DAY + hour * c.US_PER_HOUR
        opened += rng.integers(0, c.US_PER_HOUR // 1_000_000, m) * 1_000_000
        order = np.argsort(opened, kind="stable")
        category, opened = category[order], opened[order]

        # Response time is log-normal around each category's median; a request whose close
        # would fall after the period's end is simply still open (natural censoring).
        hours = rng.lognormal(np.log(medians[category]), 0.9)
        closed = opened + (hours * 3600).astype(np.int64) * 1_000_000  # whole seconds
        cancelled = rng.random(m) < 0.03
        closed = np.where(cancelled, opened + rng.integers(1, 48, m) * c.US_PER_HOUR // 4, closed)
        backlog = (rng.random(m) < 0.02) & ~cancelled
        still_open = backlog | (closed > period.end_us)
        young = (period.end_us - opened) < c.US_PER_DAY
        status = np.where(still_open, np.where(young, 1, 2), np.where(cancelled, 3, 0))

        urgent_cat = np.isin(CATEGORY_NAMES[category], list(URGENT_CATEGORIES))
        priority = np.where(urgent_cat, c.choice(rng, m, (1, 3, 4, 2)), c.choice(rng, m, (4, 5, 2, 0.3)))
        district = c.choice(rng, m, c.DISTRICT_WEIGHTS)
        lat, lon = c.locations(rng, district)
        name, first, last = c.person_names(rng, m)
        anonymous = rng.random(m) < 0.12  # anonymous reports carry no requester at all
        yield pa.table(
            {
                "request_id": c.ids("SR-", next_id, m, 8),
                "opened_at": c.timestamps(opened),
                "closed_at": c.timestamps(closed, null_mask=still_open),
                "category": c.take(CATEGORY_NAMES, category),
                "status": c.take(STATUSES, status),
                "priority": c.take(PRIORITIES, priority),
                "channel": c.take(CHANNELS, c.choice(rng, m, CHANNEL_WEIGHTS)),
                "district": c.take(c.DISTRICTS, district),
                "address": c.addresses(rng, district),
                "latitude": lat,
                "longitude": lon,
                "requester_name": c.with_nulls(name, anonymous),
                "requester_email": c.with_nulls(
                    c.emails(rng, first, last), anonymous | (rng.random(m) < 0.3)
                ),
                "requester_phone": c.with_nulls(c.phones(rng, m), anonymous | (rng.random(m) < 0.2)),
            }
        )
        next_id += m


TABLES = (c.TableSpec("public_works", "service_requests", SCHEMA, lambda rows: rows, chunks),)
