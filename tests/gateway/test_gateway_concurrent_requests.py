"""Concurrent requests through real uvicorn are each parsed, limited and validated as themselves.

Strawberry keeps one schema extension object per schema when given instances, and sets its
`execution_context` per request: requests in flight at once then read each other's context (a
document still unparsed: `INTERNAL_SERVER_ERROR` inside a 200; a limit checked on another request's
document). Every request must get its own extensions.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest

from gateway.schema import MAX_ALIASES
from tests.gateway.conftest import Server

THREADS = 8
PER_THREAD = 25


def _hammer(send: Callable[[int], tuple[bool, str]]) -> list[str]:
    """`send(n)` from THREADS threads at once, unique n each time; the failures it reported."""
    counter, failures, lock = itertools.count(), [], threading.Lock()
    start = threading.Barrier(THREADS)

    def client() -> None:
        start.wait()
        for _ in range(PER_THREAD):
            ok, detail = send(next(counter))
            if not ok:
                with lock:
                    failures.append(detail)

    workers = [threading.Thread(target=client) for _ in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    return failures


@pytest.mark.slow
def test_concurrent_reads_each_answer_their_own_document(server: Server) -> None:
    token = server.token("alice")

    def send(n: int) -> tuple[bool, str]:
        query = f"{{ publicWorks {{ q{n}: serviceRequests(first: 1) {{ nodes {{ requestId }} }} }} }}"
        response = server.client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
        body = response.json()
        ok = response.status_code == 200 and "errors" not in body and f"q{n}" in body["data"]["publicWorks"]
        return ok, response.text[:300]

    failures = _hammer(send)
    assert not failures, f"{len(failures)} of {THREADS * PER_THREAD} failed, e.g. {failures[:2]}"


@pytest.mark.slow
def test_a_limit_holds_for_each_of_many_concurrent_requests(server: Server) -> None:
    """Half the requests break the alias limit, half are fine: each gets its own verdict."""
    token = server.token("mallory")

    def send(n: int) -> tuple[bool, str]:
        aliases = MAX_ALIASES + 1 if n % 2 else 1
        query = "{ " + " ".join(f"a{n}_{i}: me {{ user }}" for i in range(aliases)) + " }"
        response = server.client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
        body = response.json()
        if n % 2:
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
            return body.get("data") is None and codes == ["LIMIT_EXCEEDED"], response.text[:300]
        return "errors" not in body and body["data"][f"a{n}_0"]["user"] == "mallory", response.text[:300]

    failures = _hammer(send)
    assert not failures, f"{len(failures)} of {THREADS * PER_THREAD} failed, e.g. {failures[:2]}"
