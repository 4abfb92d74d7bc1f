"""Parsed DuckDB statements by SQL text, so a page's SQL is parsed once, not on every request.

DuckDB's Python client parses a query given as text on every `execute`; given a parsed
`duckdb.Statement`, it runs a copy of it (`DuckDBPyStatement::GetStatement`) and binds the
parameters as for text. The gateway's SQL text repeats across requests (its values are bound
parameters, `gateway.query`), so each text is parsed once here and its statement reused. On query
(a) of `bench/gateway.py` (1M rows, one DuckDB thread, back to back in one process) this took the
page's `execute` from 2.09 to 1.65 ms; DuckDB's own `extract_statements` of that text is 0.30 ms.

Guarantee: `parsed(cursor, sql)` runs exactly what `sql` says. A text that is not one statement
is handed back as text (DuckDB runs it as before); a text that does not parse raises DuckDB's own
parser error, as `execute` would, and is not remembered. At most `entries` statements are kept,
least recently used dropped, and at most `chars` characters of their texts: a statement's parse
tree is ~30-60 bytes per character of its text (an `IN (?, ...)` of 1,000 values: ~0.2 MB), and a
caller's `where` chooses the text, so a count alone does not bound memory (256 `where`s of ~500
predicates kept ~100 MiB). A text longer than `MAX_TEXT_CHARS` is handed back as text, not kept.
Safe to call from any thread (the pool's queries run in worker threads); a statement is only read
after it is stored, and DuckDB copies it for each run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import duckdb

# Distinct SQL texts kept: one per read shape (columns, masks, filter, order) and hot copy attach.
# A page's statement holds ~12-18 KiB (~600 characters of text; measured on 5,000 texts).
STATEMENT_CACHE = 128
STATEMENT_CHARS = 128 << 10  # their texts' characters: at most ~8 MiB of parse trees
MAX_TEXT_CHARS = 8 << 10  # a longer text (a large caller `where`) is parsed on each run, as text


class Statements:
    """An LRU of `duckdb.Statement` by SQL text (see the module docstring)."""

    def __init__(
        self, entries: int = STATEMENT_CACHE, chars: int = STATEMENT_CHARS, max_text: int = MAX_TEXT_CHARS
    ) -> None:
        self._entries = entries
        self._chars = chars
        self._max_text = min(max_text, chars)
        self._held = 0  # characters of the texts kept
        self._parsed: OrderedDict[str, duckdb.Statement | str] = OrderedDict()
        self._lock = threading.Lock()

    def parsed(self, cursor: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement | str:
        """`sql`'s statement, parsed by `cursor` on first sight; `sql` itself if it holds other
        than one statement. Raises `duckdb.ParserException` for a text that does not parse."""
        with self._lock:
            statement = self._parsed.get(sql)
            if statement is not None:
                self._parsed.move_to_end(sql)
                return statement
        if len(sql) > self._max_text:
            return sql  # parsed by `execute`, as before statements were kept
        extracted = cursor.extract_statements(sql)  # outside the lock: parsing takes ~0.3 ms
        statement = extracted[0] if len(extracted) == 1 else sql
        with self._lock:
            if sql not in self._parsed:  # another thread may have parsed it meanwhile
                self._held += len(sql)
            self._parsed[sql] = statement
            while len(self._parsed) > self._entries or self._held > self._chars:
                dropped, _ = self._parsed.popitem(last=False)
                self._held -= len(dropped)
        return statement

    def __len__(self) -> int:
        return len(self._parsed)
