"""A whole-response cache for governed reads.

Snapshots are immutable, so a response is fully determined by the catalog state (which snapshot
is current), the policy version, the caller and the request body. Keyed by exactly that, an entry
never needs invalidation. A hit skips GraphQL execution but not governance bookkeeping: the
touches are kept with the entry, so every hit is still access-logged before it is returned.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.context import Touch

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Cached:
    body: bytes
    touches: tuple[Touch, ...]


class ResponseCache:
    def __init__(
        self, max_entries: int = 4096, max_body_bytes: int = 256 * 1024, max_total_bytes: int = 64 << 20
    ) -> None:
        self.max_entries = max_entries
        self.max_body_bytes = max_body_bytes
        self.max_total_bytes = max_total_bytes  # the memory bound that matters
        self._entries: OrderedDict[Key, Cached] = OrderedDict()
        self._bytes = 0
        self.hits = 0

    @staticmethod
    def key(catalog_version: Any, policy_version: str, subject: str, content_type: str, body: bytes) -> Key:
        # The content type is part of the key so a hit can never bypass the JSON-only check.
        return (catalog_version, policy_version, subject, content_type, hashlib.sha256(body).digest())

    def get(self, key: Key) -> Cached | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def put(self, key: Key, body: bytes, touches: list[Touch]) -> None:
        if self.max_entries <= 0 or len(body) > self.max_body_bytes or key in self._entries:
            return
        self._entries[key] = Cached(body=body, touches=tuple(touches))
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_total_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)
