"""Argument types for times, shared by the command groups (`--at`, `--since`, `--until`)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^(\d+)([dh])$")


def moment(text: str) -> datetime:
    """ISO 8601 date or time (UTC unless it says otherwise), or `30d` / `12h` ago."""
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return datetime.now(UTC) - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use 2026-01-31, 2026-01-31T08:00:00Z or 30d)"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
