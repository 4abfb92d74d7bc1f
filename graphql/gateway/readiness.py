"""Readiness: may this gateway process serve governed data right now?

`/healthz` is liveness (the process answers). `/readyz` runs every registered check and answers
200 `{"status": "ready", "checks": {...}}` when all pass, else 503 `{"status": "not_ready", ...}`
naming each failing check and why, so a load balancer stops routing here and an operator sees the
cause (absolute server paths cut to their last part: anyone may ask). Checks are cheap,
synchronous, and never raise: a check that raises counts as failed (fail closed).

Each room that can make the gateway unfit registers one check on `Gateway.readiness`:
broken snapshots (checksum mismatch), the metadata store (unwritable), the policy (a rejected reload).
`snapshot_memory` always passes: it shows which snapshots are served from memory and which are still
loading (a 1M-row copy takes seconds), the progress an operator waits on after a publish.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# An absolute path or file: URL in a detail (not the path part of another URL: `postgresql://host/db`).
_PATH = re.compile(r"(?:\bfile://|(?<![\w:/.~-]))/[^\s'\"():;,]+")


def without_paths(detail: str) -> str:
    """`detail` with each absolute server path cut to `.../<its last part>`: `/readyz` answers anyone,
    and where the home, the store or the audit sink live is not anyone's business."""
    return _PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], detail)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: `ok`, and a human `detail` (why not, or what was seen)."""

    ok: bool
    detail: str = ""


Check = Callable[[], CheckResult]


class Readiness:
    """A named set of checks; `report()` runs them all."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Register `check` under `name` (a later registration under the same name replaces it)."""
        self._checks[name] = check

    def report(self) -> tuple[bool, dict[str, dict[str, object]]]:
        """(all ok, {name: {"ok": bool, "detail": str}}); a check that raises is failed."""
        results: dict[str, dict[str, object]] = {}
        for name, check in self._checks.items():
            try:
                result = check()
            except Exception as exc:  # a check that cannot tell says "not ready"
                log.exception("readiness check %s raised", name)
                result = CheckResult(False, f"check failed: {type(exc).__name__}")
            results[name] = {"ok": result.ok, "detail": without_paths(result.detail)}
        return all(r["ok"] for r in results.values()), results
