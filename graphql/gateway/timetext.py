"""DuckDB's own text of a date or timestamp: how a keyset cursor carries such a sort key exactly.

Python has no infinite or out-of-range date: DuckDB hands `'infinity'` to Python as
`datetime.max` (`date.max`), `'-infinity'` as `datetime.min`, and a year past 9999 or BC as text.
A cursor made of such a Python value resumes before the row it ended on (that row is served
again) or cannot be made at all. So the page query selects `CAST(k AS VARCHAR)` for these keys,
the cursor carries that text, and the keyset predicate binds it back as `CAST(? AS <type>)`:
the text round-trips exactly, `'infinity'` included, and a genuine `9999-12-31 23:59:59.999999`
stays a different value (DuckDB's text forms: https://duckdb.org/docs/sql/data_types/timestamp).

A cursor is no secret (anyone can write one), so its text is checked here against the forms
DuckDB writes before it reaches SQL: a forged one is refused (a 400), never a conversion error
inside DuckDB (a 500).
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime

DATE, TIMESTAMP, TIMESTAMPTZ = "DATE", "TIMESTAMP", "TIMESTAMPTZ"

# Contract type names (lower case) of the columns whose values round-trip as DuckDB text, and the
# type each binds back as. TIMESTAMP_S/_MS columns compare exactly with a (microsecond) TIMESTAMP.
# Other date-time types have none, and orders by them page with offset cursors: timestamp_ns
# (nine fraction digits and a narrower range than the forms below) and any name not listed.
CAST_TYPES = {
    "date": DATE,
    "timestamp": TIMESTAMP,
    "datetime": TIMESTAMP,
    "timestamp without time zone": TIMESTAMP,
    "timestamp_us": TIMESTAMP,
    "timestamp_ms": TIMESTAMP,
    "timestamp_s": TIMESTAMP,
    "timestamptz": TIMESTAMPTZ,
    "timestamp with time zone": TIMESTAMPTZ,
}

INFINITE = ("infinity", "-infinity")

_DATE = r"(?P<year>[0-9]{4,7})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})(?P<bc> \(BC\))?"
_TIME = r" (?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]{1,6})?"
_OFFSET = r"[+-](?P<oh>[0-9]{2})(?::(?P<om>[0-9]{2})(?::(?P<os>[0-9]{2}))?)?"
# The one form DuckDB writes for each type (a TIMESTAMPTZ in the session's time zone, with its
# offset, so the text names one instant whatever the reader's zone).
_FORMS = {
    DATE: re.compile(_DATE),
    TIMESTAMP: re.compile(_DATE + _TIME),
    TIMESTAMPTZ: re.compile(_DATE + _TIME + _OFFSET),
}
# The last whole years of DuckDB's range (AD, BC): dates reach 5881580-07-10 and 5877642-06-25 BC,
# timestamps 294247-01-10 and 290308-12-22 BC; a key in those partial years has no cursor text.
_MAX_YEAR = {DATE: (5_881_579, 5_877_641), TIMESTAMP: (294_246, 290_307), TIMESTAMPTZ: (294_246, 290_307)}
_MAX_OFFSET_HOURS = 15  # DuckDB's widest zone offset is +14:00 (Pacific/Kiritimati)


def cast_type(data_type: str) -> str | None:
    """The SQL type a column's cursor text binds back as (`DATE|TIMESTAMP|TIMESTAMPTZ`), None
    when the column's type has no exact text form here."""
    return CAST_TYPES.get(data_type.lower().strip())


def checked(text: object, cast: str) -> str:
    """`text` if it is a value DuckDB writes for `cast` (`'infinity'`, `'-infinity'` or the
    type's form, with a real calendar day and clock time inside DuckDB's range); ValueError if not."""
    if not isinstance(text, str):
        raise ValueError(f"not {cast} text")
    if text in INFINITE:
        return text
    match = _FORMS[cast].fullmatch(text)
    if match is None:
        raise ValueError(f"not {cast} text")
    part = {k: int(v) for k, v in match.groupdict().items() if v is not None and k != "bc"}
    year, month = part["year"], part["month"]
    astronomical = 1 - year if match["bc"] else year  # 1 BC is year 0, a leap year
    if not (1 <= year <= _MAX_YEAR[cast][bool(match["bc"])] and 1 <= month <= 12):
        raise ValueError(f"not {cast} text")
    days = calendar.monthrange(2000 if calendar.isleap(astronomical) else 2001, month)[1]  # same calendar
    clock = part.get("hour", 0) < 24 and part.get("minute", 0) < 60 and part.get("second", 0) < 60
    offset = part.get("oh", 0) <= _MAX_OFFSET_HOURS and part.get("om", 0) < 60 and part.get("os", 0) < 60
    if not (1 <= part["day"] <= days and clock and offset):
        raise ValueError(f"not {cast} text")
    return text


class Ambiguous(ValueError):
    """A cursor key that may stand for `'infinity'` or `'-infinity'` as well as for itself."""


# What DuckDB hands Python for 'infinity' / '-infinity' (and for those exact finite values).
_STAND_INS = {datetime.max, datetime.min, date.max, date.min}


def legacy(text: object, cast: str) -> date | datetime:
    """A date or timestamp key of a cursor issued before cursors carried DuckDB's text (Python's
    ISO form). ValueError if it is no ISO value, or one of the values DuckDB gives Python for
    `'infinity'`/`'-infinity'` too: such a cursor cannot say which it meant."""
    if not isinstance(text, str):
        raise ValueError(f"not {cast} text")
    value = date.fromisoformat(text) if cast == DATE else datetime.fromisoformat(text)
    if (value.replace(tzinfo=None) if isinstance(value, datetime) else value) in _STAND_INS:
        raise Ambiguous(text)
    return value
