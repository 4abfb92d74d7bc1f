"""Truth table: `http_body.too_deep`, the check that refuses a JSON body nested deeper than the
limit before it is parsed (a deep body is a stack and CPU attack on the parser)."""

from __future__ import annotations

import pytest

from gateway.http_body import too_deep

CASES = [
    (b'{"a": [1, 2]}', 2, False),
    (b'{"a": [1, 2]}', 1, True),
    (b"[" * 4 + b"]" * 4, 4, False),  # exactly as many brackets as the limit
    (b"[" * 5 + b"]" * 5, 4, True),
    (b"[[]," * 6 + b"[]" + b"]" * 6, 4, True),  # many brackets, one deep chain
    (b"[" + b"[]," * 10 + b"[]]", 4, False),  # many brackets, shallow: the full pass
    (b'{"q": "' + b"{" * 50 + b'"}', 4, False),  # brackets in a string do not nest
    (b'{"q": "\\"' + b"[" * 50 + b'"}', 4, False),  # nor after an escaped quote
    (b'{"q": "x"' + b', "v": ' + b"[" * 9 + b"]" * 9 + b"}", 8, True),
    (b"", 0, False),
]


@pytest.mark.parametrize(("body", "limit", "deep"), CASES)
def test_too_deep(body: bytes, limit: int, deep: bool) -> None:
    assert too_deep(body, limit) is deep
