"""Parsed statements (gateway/statements.py) and memory: what a caller can make the gateway keep.

A `where` is the caller's: every distinct shape is a distinct SQL text, and each text's parsed
statement is kept. Within the request limits (`limits.MAX_VARIABLE_VALUES`), a caller can send
`where`s of hundreds of predicates, whose statements are ~0.85 KB of DuckDB parse tree per
predicate (outside DuckDB's memory_limit and the result cache's bound): what the statements kept
hold must stay small whatever callers send. Real uvicorn HTTP."""

from __future__ import annotations

import gc

from tests.gateway.conftest import Server

WHERE = (
    "query($w: PublicWorksServiceRequestsWhere) "
    "{ publicWorks { serviceRequests(where: $w, first: 1) { nodes { requestId } } } }"
)
DISTINCT_TEXTS = 256  # twice statements.STATEMENT_CACHE: the count alone would keep 128 of them
GROWTH_ALLOWED_MB = 48


def _rss_mb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 >> 20


def test_distinct_large_wheres_keep_bounded_memory(server: Server) -> None:
    """256 requests, each a `where` of 380..635 `contains` predicates (within the variables' limit):
    each a new SQL text whose statement the pool keeps. Before statements were kept, the texts and
    their results were all the gateway held of them."""
    token = server.token("alice")
    headers = {"Authorization": f"Bearer {token}"}

    def ask(terms: int) -> None:
        where = {"or": [{"category": {"contains": "zz"}} for _ in range(terms)]}
        response = server.client.post(
            "/graphql", json={"query": WHERE, "variables": {"w": where}}, headers=headers
        )
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), body

    for terms in range(60, 80):  # warm up: the document, schemas and DuckDB's first allocations
        ask(terms)
    gc.collect()
    before = _rss_mb()
    for terms in range(380, 380 + DISTINCT_TEXTS):
        ask(terms)
    gc.collect()
    grown = _rss_mb() - before
    assert grown < GROWTH_ALLOWED_MB, f"the gateway grew {grown} MiB keeping {DISTINCT_TEXTS} distinct wheres"


def test_statements_bound_the_characters_they_keep() -> None:
    """The LRU is bounded in its texts' characters, not only their number; a text longer than the
    per-text cap is handed back as text (DuckDB parses it on each run, as before) and not kept."""
    import duckdb

    from gateway.statements import Statements

    con = duckdb.connect(":memory:")
    try:
        statements = Statements(entries=256, chars=4000, max_text=1000)
        long = "SELECT " + ", ".join("?" for _ in range(400))  # 1,204 characters
        assert statements.parsed(con, long) == long and len(statements) == 0
        texts = [f"SELECT {n}, " + ", ".join("1" for _ in range(150)) for n in range(10)]  # ~460 each
        for text in texts:
            assert isinstance(statements.parsed(con, text), duckdb.Statement)
        assert sum(len(t) for t in texts[-len(statements) :]) <= 4000 < sum(len(t) for t in texts)
        assert statements.parsed(con, texts[-1]) is statements.parsed(con, texts[-1])  # kept
    finally:
        con.close()
