"""The auditors' pages: `GET /audit` (access-log search through the governed `accessLog` field,
readers of data derived from a product through `readersOfDerived`) and `GET /audit/verify` (the
log against its hash chain, signed checkpoints and external sink: `meshcore.audit.verify`'s
`verify_report`, the function `civicmesh audit verify` calls).

Who may see what is the gateway's decision (the `audit` right): an auditor sees every record, an
owner those of the products it may audit, anyone else gets its 403. The verification runs only
for a user the gateway lets read the log, and reads every record: it has its own page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshcore.audit.verify import verify_report
from portal import documents
from portal.backend import PageError, Reader, backend
from portal.pages import Pages

PAGE_SIZE = 50
DECISIONS = ("allow", "deny", "none")


def _day(text: str, end: bool = False) -> str | None:
    """A `YYYY-MM-DD` form field as the start of that day in UTC (of the next day for `until`)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None if not text.strip() else text.strip()  # the gateway refuses it with its message
    if end:
        day = date.fromordinal(day.toordinal() + 1)
    return f"{day.isoformat()}T00:00:00Z"


class AuditPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def routes(self) -> list[Route]:
        return [
            Route("/audit", self.pages.page(self.show), methods=["GET"], name="portal_audit"),
            Route("/audit/verify", self.pages.page(self.verify), methods=["GET"], name="portal_verify"),
        ]

    async def show(self, request: Request, reader: Reader) -> Response:
        params = request.query_params
        search = {
            k: params.get(k, "").strip()[:200] for k in ("subject", "product", "decision", "since", "until")
        }
        variables: dict[str, Any] = {
            "subject": search["subject"] or None,
            "product": search["product"] or None,
            "decision": search["decision"] or None,
            "since": _day(search["since"]),
            "until": _day(search["until"], end=True),
            "first": PAGE_SIZE,
            "after": params.get("after") or None,
        }
        result = await reader.run(documents.ACCESS_LOG, variables)
        log = (result.data or {}).get("accessLog")
        if log is None and result.status == 403:
            raise PageError(403, result.message)
        readers_of = params.get("readers", "").strip()[:200]
        readers: list[dict[str, Any]] | None = None
        readers_error = ""
        if readers_of:
            found = await reader.run(documents.READERS, {"product": readers_of})
            readers = (found.data or {}).get("readersOfDerived")
            readers_error = found.message
        products = [p["name"] for p in (result.data or {}).get("products") or ()]
        return self.pages.render(
            request,
            "audit.html",
            result.status if log is None else 200,
            log=log,
            error=result.message,
            search=search,
            decisions=DECISIONS,
            products=products,
            readers_of=readers_of,
            readers=readers,
            readers_error=readers_error,
            next_query=_next_query(params, log),
        )

    async def verify(self, request: Request, reader: Reader) -> Response:
        # The gateway decides who may read the log (and records the attempt); only then verify it.
        # `since` now: a period from the beginning is refused once records are archived.
        probe = {"first": 0, "since": datetime.now(UTC).isoformat()}
        result = await reader.run(documents.ACCESS_LOG, probe)
        if (result.data or {}).get("accessLog") is None:
            raise PageError(result.status if result.errors else 403, result.message or "Not allowed.")
        check = await anyio.to_thread.run_sync(verify_report, backend(request).access_log)
        return self.pages.render(request, "audit_verify.html", check=check)


def _next_query(params: Any, log: dict[str, Any] | None) -> str | None:
    if not log or not log["pageInfo"]["hasNextPage"]:
        return None
    kept = [(k, v) for k, v in params.multi_items() if k != "after"]
    return "?" + urlencode([*kept, ("after", log["pageInfo"]["endCursor"])])
