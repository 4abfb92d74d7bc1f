"""finance.vendor_payments: accounts-payable ledger; account numbers are the sensitive part."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from civicmesh.synthetic import common as c

VENDOR_WORDS = c.words(
    "Northstar Riverside Granite Summit Prairie Lakeshore Keystone Evergreen Ironwood Pioneer Beacon "
    "Harbor Cardinal Liberty Meridian Atlas Bluebird Redwood Silverline Cornerstone"
)
VENDOR_TRADES = c.words(
    "Paving Electric Landscaping Supply Consulting Fleet Services Construction Software Uniforms "
    "Environmental Printing"
)
VENDOR_SUFFIXES = np.array(["LLC", "Inc.", "Co.", "Group", "Partners"])
EXPENSE_CATEGORIES = np.array(["supplies", "services", "construction", "equipment", "software", "utilities"])
METHODS = np.array(["ach", "check", "card"])
# Who buys the most: public works and transportation run the big contracts.
DEPARTMENT_WEIGHTS = (35, 25, 12, 10, 8, 10)

SCHEMA = pa.schema(
    [
        ("payment_id", pa.string()),
        ("vendor_id", pa.string()),
        ("vendor_name", pa.string()),
        ("department", pa.string()),
        ("district", pa.string()),
        ("expense_category", pa.string()),
        ("amount", pa.float64()),
        ("paid_at", pa.timestamp("us")),
        ("payment_method", pa.string()),
        ("invoice_number", pa.string()),
        ("account_number", pa.string()),
    ]
)


def vendor_payments(rng: np.random.Generator, n: int, period: c.Period) -> Iterator[pa.Table]:
    vendors = max(50, n // 25)
    vendor_name = c.join(
        c.take(VENDOR_WORDS, rng.integers(0, len(VENDOR_WORDS), vendors)),
        c.take(VENDOR_TRADES, rng.integers(0, len(VENDOR_TRADES), vendors)),
        c.take(VENDOR_SUFFIXES, rng.integers(0, len(VENDOR_SUFFIXES), vendors)),
        sep=" ",
    )
    vendor_account = c.padded(rng.integers(10**9, 10**12, vendors), 12)
    vendor_department = c.choice(rng, vendors, DEPARTMENT_WEIGHTS)
    vendor_trade = rng.integers(0, len(EXPENSE_CATEGORIES), vendors)

    vendor = c.choice(rng, n, c.zipf_weights(vendors, 0.9))  # a few big contractors get most invoices
    # Payments run on weekdays, with a rush at the June fiscal year end.
    weekdays = (period.weekday() < 5) * c.seasonal(period.day_of_year(), 170, 0.3)
    day = np.sort(c.choice(rng, n, weekdays))
    paid = period.start_us + day * c.US_PER_DAY + rng.integers(8, 18, n) * c.US_PER_HOUR
    # Mostly the vendor's usual department, sometimes another one.
    other = rng.random(n) < 0.15
    department = np.where(other, c.choice(rng, n, DEPARTMENT_WEIGHTS), vendor_department[vendor])
    amount = np.round(rng.lognormal(np.log(2_500), 1.4, n), 2)
    yield pa.table(
        {
            "payment_id": c.ids("PAY-", 1, n, 7),
            "vendor_id": c.join("V-", c.padded(vendor + 1, 5)),
            "vendor_name": vendor_name.take(pa.array(vendor)),
            "department": c.take(c.DEPARTMENTS, department),
            "district": c.take(c.DISTRICTS, c.choice(rng, n, c.DISTRICT_WEIGHTS)),
            "expense_category": c.take(
                EXPENSE_CATEGORIES, np.where(other, rng.integers(0, 6, n), vendor_trade[vendor])
            ),
            "amount": pa.array(amount),
            "paid_at": c.timestamps(paid),
            "payment_method": c.take(METHODS, np.where(amount > 10_000, 0, c.choice(rng, n, (60, 25, 15)))),
            "invoice_number": c.join("INV-", c.padded(rng.integers(0, 10**8, n), 8)),
            "account_number": vendor_account.take(pa.array(vendor)),
        }
    )


TABLES = (
    c.TableSpec(
        "finance",
        "vendor_payments",
        SCHEMA,
        lambda rows: int(np.clip(rows // 10, 500, 100_000)),
        vendor_payments,
    ),
)
