"""Shared vocabulary and helpers for the synthetic city: districts, names, text columns, atomic writes.

Everything is vectorised: numpy draws the indices, pyarrow compute builds the strings in C++, so
ten million rows never become ten million Python objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def words(text: str) -> np.ndarray:
    """A vocabulary array from a space-separated string (keeps long word lists compact)."""
    return np.array(text.split())


DISTRICTS = np.array([f"D{i}" for i in range(1, 10)])
# Skewed on purpose: the dense downtown districts file far more requests than the outskirts.
DISTRICT_WEIGHTS = np.array([18, 15, 14, 12, 11, 9, 8, 7, 6], dtype=float) / 97
# A 3x3 grid of district centres around a fictional city centre (D1 north-west ... D9 south-east).
# Each district is the grid cell around its centre (districts.py draws these cells as polygons).
CITY_LAT, CITY_LON = 44.95, -93.20
CELL_LAT, CELL_LON = 0.06, 0.08  # degrees between neighbouring centres = one cell's height, width
DISTRICT_LAT = CITY_LAT + np.repeat([CELL_LAT, 0.0, -CELL_LAT], 3)
DISTRICT_LON = CITY_LON + np.tile([-CELL_LON, 0.0, CELL_LON], 3)
# Points stay this far (degrees) inside their cell, so rounding to 6 decimals never puts one on an edge.
_EDGE_MARGIN = 1e-5

DEPARTMENTS = np.array(["public_works", "transportation", "environment", "finance", "hr", "city_ops"])

FIRST_NAMES = words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Carlos Karen Daniel Lisa Matthew Nancy Anthony Betty Mark Sandra Aisha "
    "Ashley Luis Kimberly Wei Emily Andrew Donna Joshua Michelle Kenji Carol Priya Amanda Omar Melissa "
    "Diego Deborah Fatima Stephanie Ivan Rebecca Noah Sharon Mateo Laura Yusuf Cynthia Olga Dorothy"
)
LAST_NAMES = words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Kim Patel Chen Okafor Kowalski Haddad"
)
# Street names per district: each district draws from its own block of streets, as in a real city.
STREETS = np.array(
    [
        f"{name} {suffix}"
        for name in words(
            "Oak Maple Cedar Elm Pine Birch Walnut Chestnut Spruce Willow Ash Hickory Poplar Linden Aspen "
            "Main Market Church Mill Park River Lake Hill Bridge Station College Union Franklin Lincoln "
            "Washington Jefferson Madison Monroe Grant Harbor Summit Valley Meadow Orchard Prospect Central "
            "Highland Garden Spring Forest"
        )
        for suffix in ("St", "Ave", "Blvd")
    ]
)
STREETS_PER_DISTRICT = len(STREETS) // len(DISTRICTS)
EMAIL_DOMAINS = np.array(["example.com", "example.org", "example.net", "mail.example"])
AREA_CODES = np.array(["612", "651", "763"])

# The period ends at a date fixed by the seed, never now(): the same seed gives the same bytes.
_ANCHOR = datetime(2026, 9, 30)
US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR


@dataclass(frozen=True)
class Period:
    end: datetime  # exclusive, midnight
    days: int

    @classmethod
    def for_seed(cls, seed: int, days: int = 730) -> Period:
        return cls(end=_ANCHOR - timedelta(days=seed % 28), days=days)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    @property
    def start_us(self) -> int:
        return int((self.start - datetime(1970, 1, 1)).total_seconds()) * 1_000_000

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * US_PER_DAY

    def day_of_year(self) -> np.ndarray:
        """Day of year (0-based) for each day of the period, for seasonal curves."""
        first = self.start.timetuple().tm_yday - 1
        return (first + np.arange(self.days)) % 365

    def weekday(self) -> np.ndarray:
        return (self.start.weekday() + np.arange(self.days)) % 7


def seasonal(day_of_year: np.ndarray, peak_day: int, amplitude: float) -> np.ndarray:
    """1 + amplitude * cos(...): peaks on `peak_day`, never negative for amplitude <= 1."""
    return 1.0 + amplitude * np.cos(2 * np.pi * (day_of_year - peak_day) / 365.0)


def choice(rng: np.random.Generator, n: int, weights: Iterable[float]) -> np.ndarray:
    """Indices drawn with the given (unnormalised) weights."""
    p = np.asarray(list(weights), dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def zipf_weights(k: int, exponent: float = 1.1) -> np.ndarray:
    return 1.0 / np.arange(1, k + 1) ** exponent


def take(values: np.ndarray, idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values), pa.array(idx))


def join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def as_text(numbers: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(numbers), pa.string())


def padded(numbers: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(as_text(numbers), width=width, padding="0")


def ids(prefix: str, start: int, n: int, width: int) -> pa.Array:
    return join(prefix, padded(np.arange(start, start + n), width))


def with_nulls(values: pa.Array, null_mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(null_mask), pa.scalar(None, values.type), values)


def timestamps(us: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(us.astype("int64"), type=pa.timestamp("us"), mask=null_mask)


def person_names(rng: np.random.Generator, n: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Full names plus the first/last name indices, so emails can match the name."""
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    return join(take(FIRST_NAMES, first), take(LAST_NAMES, last), sep=" "), first, last


def emails(rng: np.random.Generator, first: np.ndarray, last: np.ndarray) -> pa.Array:
    """Private e-mails matching the name, on reserved example domains (never a real address)."""
    local = join(
        take(np.char.lower(FIRST_NAMES), first),
        ".",
        take(np.char.lower(LAST_NAMES), last),
        as_text(rng.integers(1, 100, len(first))),
    )
    return join(local, "@", take(EMAIL_DOMAINS, rng.integers(0, len(EMAIL_DOMAINS), len(first))))


def phones(rng: np.random.Generator, n: int) -> pa.Array:
    area = take(AREA_CODES, rng.integers(0, len(AREA_CODES), n))
    return join("(", area, ") 555-", padded(rng.integers(0, 10_000, n), 4))


def _inside_cell(rng: np.random.Generator, n: int, sigma: float, half_cell: float) -> np.ndarray:
    """Normal offsets (sd `sigma`) redrawn until strictly inside (-half_cell, half_cell)."""
    limit = half_cell - _EDGE_MARGIN
    offsets = rng.normal(0, sigma, n)
    outside = np.abs(offsets) >= limit
    while outside.any():
        offsets[outside] = rng.normal(0, sigma, int(outside.sum()))
        outside = np.abs(offsets) >= limit
    return offsets


def locations(
    rng: np.random.Generator, district: np.ndarray, spread: float = 0.02
) -> tuple[pa.Array, pa.Array]:
    """Latitude/longitude clustered around each district's centre (sd `spread` degrees, 1.3x wider in
    longitude) and always inside that district's cell: a point never lies in another district."""
    lat = DISTRICT_LAT[district] + _inside_cell(rng, len(district), spread, CELL_LAT / 2)
    lon = DISTRICT_LON[district] + _inside_cell(rng, len(district), spread * 1.3, CELL_LON / 2)
    return pa.array(np.round(lat, 6)), pa.array(np.round(lon, 6))


def addresses(rng: np.random.Generator, district: np.ndarray) -> pa.Array:
    street = district * STREETS_PER_DISTRICT + rng.integers(0, STREETS_PER_DISTRICT, len(district))
    # House numbers skew low, as most streets are short.
    house = np.minimum(rng.lognormal(5.5, 1.0, len(district)).astype(int) + 1, 9999)
    return join(as_text(house), take(STREETS, street), sep=" ")


Chunks = Callable[[np.random.Generator, int, Period], Iterator[pa.Table]]


@dataclass(frozen=True)
class TableSpec:
    """One landing table: its place, how many rows it gets for a given `--rows`, and its chunks."""

    department: str
    table: str
    schema: pa.Schema
    rows_for: Callable[[int], int]
    chunks: Chunks


def write_parquet_atomic(
    path: Path, schema: pa.Schema, chunks: Iterable[pa.Table], on_rows: Callable[[int], None]
) -> int:
    """Stream chunks into a temp file beside `path`, fsync, then rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    total = 0
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for chunk in chunks:
                writer.write_table(chunk.cast(schema))
                total += chunk.num_rows
                on_rows(chunk.num_rows)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)
    return total
