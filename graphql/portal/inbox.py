"""The owners' inbox (`GET /inbox`) and its forms: approve, reject (with a reason), revoke.

Reads `accessRequests` (the user's own requests, those of the departments the user owns, every
one for an auditor) and acts through the gateway's mutations (`approveAccessRequest`,
`rejectAccessRequest`, `revokeAccess`), which decide who may do what (policies/grants.py): the
page offers the decision forms for departments the user owns, the gateway refuses the rest
(4xx page with its message, one access-log record).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from portal import documents
from portal.backend import PageError, Reader, backend
from portal.pages import Pages, base_path, flash
from portal.redirects import safe_next

VERBS = {
    "approve": (documents.APPROVE, "approveAccessRequest", "note", "approved"),
    "reject": (documents.REJECT, "rejectAccessRequest", "reason", "rejected"),
    "revoke": (documents.REVOKE, "revokeAccess", "reason", "revoked"),
}
MAX_TEXT = 2000


class InboxPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def routes(self) -> list[Route]:
        return [
            Route("/inbox", self.pages.page(self.show), methods=["GET"], name="portal_inbox"),
            Route("/inbox/{id:int}/{verb}", self.pages.page(self.decide), methods=["POST"]),
        ]

    async def show(self, request: Request, reader: Reader) -> Response:
        result = await reader.run(documents.REQUESTS)
        if result.data is None or result.data.get("accessRequests") is None:
            raise PageError(result.status, result.message)
        me = result.data["me"]
        owning = {name for name, role in backend(request).policy.directory.roles.items() if role.owns}
        owned = {r["department"] for r in me["roles"] if r["role"] in owning}
        requests = result.data["accessRequests"]
        mine = [r for r in requests if r["subject"] == reader.subject]
        others = [r for r in requests if r["subject"] != reader.subject]
        pending = [r for r in others if r["state"] == "PENDING" and r["department"] in owned]
        active = [r for r in others if r["state"] == "ACTIVE" and r["department"] in owned]
        seen = {r["id"] for r in (*pending, *active)}
        return self.pages.render(
            request,
            "inbox.html",
            owned=sorted(owned),
            pending=pending,
            active=active,
            mine=list(reversed(mine)),
            visible=[r for r in reversed(others) if r["id"] not in seen],
        )

    async def decide(self, request: Request, reader: Reader) -> Response:
        verb = request.path_params["verb"]
        if verb not in VERBS:
            raise PageError(404, "There is no such page.")
        document, field, text_field, done = VERBS[verb]
        form = await request.form()
        variables: dict[str, Any] = {
            "id": request.path_params["id"],
            text_field: str(form.get(text_field) or "")[:MAX_TEXT],
        }
        result = await reader.run(document, variables)
        decided = (result.data or {}).get(field)
        if decided is None:
            raise PageError(result.status, result.message)
        flash(
            request,
            f"Request #{decided['id']} ({decided['subject']}: {decided['action']} on {decided['product']}) "
            f"{done}.",
        )
        target = safe_next(str(form.get("next") or ""), f"{base_path(request)}/inbox")
        return RedirectResponse(target, status_code=303)
