"""The synthetic city: deterministic bytes, realistic shape, atomic files."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from civicmesh import synthetic
from civicmesh.synthetic.common import write_parquet_atomic

ROWS = 20_000


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synthetic.generate(tmp_path_factory.mktemp("city"), rows=ROWS, seed=42)


@pytest.fixture(scope="module")
def requests(city: dict[str, Path]) -> duckdb.DuckDBPyRelation:
    con = duckdb.connect()
    return con.read_parquet(str(city["public_works/service_requests"]))


def sql(rel: duckdb.DuckDBPyRelation, query: str) -> list[tuple]:
    return rel.query("r", query).fetchall()


def test_same_seed_gives_byte_identical_files(tmp_path: Path, city: dict[str, Path]) -> None:
    again = synthetic.generate(tmp_path / "again", rows=ROWS, seed=42)
    assert again.keys() == city.keys()
    for name, path in city.items():
        assert again[name].read_bytes() == path.read_bytes(), name


def test_another_seed_gives_other_data(tmp_path: Path, city: dict[str, Path]) -> None:
    other = synthetic.generate(tmp_path / "other", rows=ROWS, seed=43)
    for name, path in city.items():
        assert other[name].read_bytes() != path.read_bytes(), name


def test_every_department_gets_its_landing_files(city: dict[str, Path]) -> None:
    planned = synthetic.planned_rows(ROWS)
    for spec in synthetic.TABLES:
        path = city[f"{spec.department}/{spec.table}"]
        assert path == path.parent.parent / spec.department / f"{spec.table}.parquet"
        meta = pq.read_metadata(path)
        assert meta.num_rows == planned[f"{spec.department}/{spec.table}"]
        assert pq.read_schema(path).equals(spec.schema)
    assert not list(path.parent.parent.rglob("*.tmp"))


def test_rows_scale_the_largest_table_and_keep_others_small() -> None:
    for rows in (synthetic.MIN_ROWS, 1_000_000, synthetic.MAX_ROWS):
        planned = synthetic.planned_rows(rows)
        assert planned["public_works/service_requests"] == rows
        others = [n for name, n in planned.items() if name != "public_works/service_requests"]
        assert all(0 < n <= max(rows, 350_000) for n in others)
    assert synthetic.planned_rows(10_000_000)["hr/employees"] <= 5_000
    with pytest.raises(ValueError, match="rows must be between"):
        synthetic.generate(Path("/nonexistent"), rows=999)


def test_categories_and_districts_are_skewed(requests) -> None:
    categories = sql(requests, "SELECT category, count(*) n FROM r GROUP BY 1 ORDER BY n DESC")
    assert [c[0] for c in categories[:2]] == ["pothole", "streetlight_out"]
    assert categories[0][1] > 5 * categories[-1][1]
    districts = dict(sql(requests, "SELECT district, count(*) FROM r GROUP BY 1"))
    assert sorted(districts) == [f"D{i}" for i in range(1, 10)]
    assert districts["D1"] > 2 * districts["D9"]


def test_potholes_peak_in_late_winter_and_snow_only_in_winter(requests) -> None:
    by_month = dict(
        sql(requests, "SELECT month(opened_at), count(*) FROM r WHERE category = 'pothole' GROUP BY 1")
    )
    assert by_month[2] + by_month[3] > 3 * (by_month[8] + by_month[9])
    (summer_snow,) = sql(
        requests, "SELECT count(*) FROM r WHERE category = 'snow_removal' AND month(opened_at) IN (6, 7, 8)"
    )[0]
    assert summer_snow == 0


def test_period_is_two_years_ending_on_a_seed_derived_date(requests) -> None:
    (first, last, days) = sql(
        requests,
        "SELECT min(opened_at), max(opened_at), date_diff('day', min(opened_at), max(opened_at)) FROM r",
    )[0]
    end = synthetic.Period.for_seed(42).end
    assert 700 <= days <= 730 and last < end and first >= synthetic.Period.for_seed(42).start
    assert synthetic.Period.for_seed(42).end != synthetic.Period.for_seed(43).end


def test_ids_are_unique_and_rise_with_time(requests) -> None:
    (n, distinct, out_of_order) = sql(
        requests,
        "SELECT count(*), count(DISTINCT request_id),"
        " count(*) FILTER (WHERE opened_at < lag_opened) FROM"
        " (SELECT *, lag(opened_at) OVER (ORDER BY request_id) lag_opened FROM r)",
    )[0]
    assert n == distinct == ROWS and out_of_order == 0


def test_open_requests_have_no_close_date_and_responses_are_log_normal(requests) -> None:
    (open_share, inconsistent) = sql(
        requests,
        "SELECT avg(CASE WHEN closed_at IS NULL THEN 1 ELSE 0 END),"
        " count(*) FILTER (WHERE (closed_at IS NULL) <> (status IN ('open', 'in_progress'))) FROM r",
    )[0]
    assert 0.01 < open_share < 0.15 and inconsistent == 0
    hours = np.array(
        sql(
            requests,
            "SELECT date_diff('second', opened_at, closed_at) / 3600 FROM r WHERE category = 'pothole'"
            " AND status = 'closed'",
        )
    ).ravel()
    logs = np.log(hours)
    assert 70 < np.median(hours) < 130  # the pothole median is 96 h
    assert abs(np.mean(logs) - np.median(logs)) < 0.1  # symmetric in log space
    assert np.mean(hours) > 1.2 * np.median(hours)  # long right tail


def test_pii_is_present_and_realistic(requests) -> None:
    rows = sql(requests, "SELECT requester_name, requester_email, requester_phone, address, latitude FROM r")
    names = [r[0] for r in rows if r[0]]
    assert 0.8 < len(names) / len(rows) < 0.95  # some reports are anonymous
    assert all(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n) for n in names[:500])
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\d+@[a-z.]+", r[1]) for r in rows[:500] if r[1])
    assert all(re.fullmatch(r"\(\d{3}\) 555-\d{4}", r[2]) for r in rows[:500] if r[2])
    assert all(re.fullmatch(r"\d+ [A-Z][a-z]+ (St|Ave|Blvd)", r[3]) for r in rows[:500])
    assert all(44.8 < r[4] < 45.1 for r in rows)


def test_chunked_output_is_deterministic_and_ordered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large runs are written in day-range chunks; ids must still rise with time across chunks."""
    monkeypatch.setattr(synthetic.public_works, "CHUNK_ROWS", 1_500)
    paths = [synthetic.generate(tmp_path / str(i), rows=10_000, seed=5) for i in range(2)]
    first, second = (p["public_works/service_requests"] for p in paths)
    assert first.read_bytes() == second.read_bytes()
    assert pq.read_metadata(first).num_row_groups > 3
    table = pq.read_table(first, columns=["request_id", "opened_at"])
    opened = table["opened_at"].to_numpy()
    assert table["request_id"].to_pylist() == sorted(table["request_id"].to_pylist())
    assert (np.diff(opened.astype("int64")) >= 0).all()


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    spec = synthetic.TABLES[-1]  # hr.employees: small
    rng = np.random.default_rng(1)
    path = tmp_path / "hr" / "employees.parquet"
    write_parquet_atomic(
        path, spec.schema, spec.chunks(rng, 300, synthetic.Period.for_seed(1)), lambda n: None
    )
    before = path.read_bytes()

    def broken():
        yield from spec.chunks(rng, 300, synthetic.Period.for_seed(1))
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_parquet_atomic(path, spec.schema, broken(), lambda n: None)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["employees.parquet"]


def test_other_tables_have_their_shape(city: dict[str, Path]) -> None:
    con = duckdb.connect()
    (rush, night) = con.execute(
        "SELECT avg(vehicle_count) FILTER (WHERE hour(counted_at) = 8 AND dayofweek(counted_at) IN (2, 3)),"
        " avg(vehicle_count) FILTER (WHERE hour(counted_at) = 3) FROM read_parquet(?)",
        [str(city["transportation/traffic_counts"])],
    ).fetchone()
    assert rush > 5 * night
    (managers_ok,) = con.execute(
        "SELECT bool_and(m.employee_id IS NOT NULL) FROM read_parquet($1) e"
        " LEFT JOIN read_parquet($1) m ON e.manager_id = m.employee_id WHERE e.manager_id IS NOT NULL",
        [str(city["hr/employees"])],
    ).fetchone()
    assert managers_ok
    (accounts,) = con.execute(
        "SELECT bool_and(regexp_full_match(account_number, '\\d{12}')) FROM read_parquet(?)",
        [str(city["finance/vendor_payments"])],
    ).fetchone()
    assert accounts
