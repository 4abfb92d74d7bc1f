"""hr.employees: the staff register; salaries and personal details are the restricted part."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import numpy as np
import pyarrow as pa

from civicmesh.synthetic import common as c

DEPARTMENT_WEIGHTS = (40, 25, 10, 10, 5, 10)
# (title, median salary, share of staff): crews outnumber analysts, analysts outnumber managers.
TITLES = (
    ("Maintenance Worker", 52_000, 30),
    ("Equipment Operator", 58_000, 15),
    ("Inspector", 66_000, 12),
    ("Clerk", 46_000, 12),
    ("Engineer", 92_000, 8),
    ("Analyst", 78_000, 10),
    ("Supervisor", 84_000, 6),
    ("Manager", 110_000, 5),
    ("Director", 145_000, 2),
)
TITLE_NAMES = np.array([t[0] for t in TITLES])
STATUSES = np.array(["active", "on_leave"])
MANAGER_TITLES = (7, 8)

SCHEMA = pa.schema(
    [
        ("employee_id", pa.string()),
        ("full_name", pa.string()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("department", pa.string()),
        ("job_title", pa.string()),
        ("manager_id", pa.string()),
        ("district", pa.string()),
        ("salary", pa.float64()),
        ("hire_date", pa.date32()),
        ("employment_status", pa.string()),
    ]
)


def _managers(rng: np.random.Generator, department: np.ndarray, title: np.ndarray) -> np.ndarray:
    """Each non-manager reports to a manager of their own department (-1 for the top)."""
    manager = np.full(len(department), -1)
    for dept in np.unique(department):
        bosses = np.flatnonzero((department == dept) & np.isin(title, MANAGER_TITLES))
        staff = np.flatnonzero((department == dept) & ~np.isin(title, MANAGER_TITLES))
        if len(bosses):
            manager[staff] = bosses[rng.integers(0, len(bosses), len(staff))]
    return manager


def employees(rng: np.random.Generator, n: int, period: c.Period) -> Iterator[pa.Table]:
    department = c.choice(rng, n, DEPARTMENT_WEIGHTS)
    title = c.choice(rng, n, [t[2] for t in TITLES])
    manager = _managers(rng, department, title)
    salary = np.round(rng.lognormal(np.log([t[1] for t in TITLES])[title], 0.12), -2)
    tenure_days = np.minimum(rng.exponential(8 * 365, n).astype(int), 35 * 365)
    hire = (period.end.date() - date(1970, 1, 1)).days - 1 - tenure_days
    name, first, last = c.person_names(rng, n)
    employee_ids = c.ids("E", 1, n, 6)
    first_lower, last_lower = np.char.lower(c.FIRST_NAMES), np.char.lower(c.LAST_NAMES)
    # The employee number keeps work e-mails unique, as a mail system would.
    local = c.join(c.take(first_lower, first), ".", c.take(last_lower, last), c.as_text(np.arange(1, n + 1)))
    yield pa.table(
        {
            "employee_id": employee_ids,
            "full_name": name,
            "email": c.join(local, "@city.example"),
            "phone": c.phones(rng, n),
            "department": c.take(c.DEPARTMENTS, department),
            "job_title": c.take(TITLE_NAMES, title),
            "manager_id": c.with_nulls(employee_ids.take(pa.array(np.maximum(manager, 0))), manager < 0),
            "district": c.take(c.DISTRICTS, c.choice(rng, n, c.DISTRICT_WEIGHTS)),
            "salary": pa.array(salary),
            "hire_date": pa.array(hire.astype(np.int32), type=pa.date32()),
            "employment_status": c.take(STATUSES, (rng.random(n) < 0.06).astype(int)),
        }
    )


TABLES = (
    c.TableSpec("hr", "employees", SCHEMA, lambda rows: int(np.clip(rows // 20, 300, 5_000)), employees),
)
