"""Remembers the call ids an endpoint has started, to refuse a replayed request.

A signed request can be captured and sent again while its timestamp is fresh (within
the signer's ``max_skew``). The orchestrator never sends two requests with one call id
(a call id is ``<run>:<claim number>``, and every claim takes a new number), except
when its transport re-sends a request the app closed the connection on without
answering; so a call id seen twice is refused. Entries are kept until their timestamp
can no longer pass verification; the cache is bounded (oldest entries go first), per
process. See docs/protocol.md, "Threat model".
"""

from __future__ import annotations

import time
from collections import OrderedDict

DEFAULT_MAX_ENTRIES = 100_000


class ReplayCache:
    def __init__(self, window: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # call id -> forget after

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, call_id: str, signed_at: float, now: float | None = None) -> bool:
        """Record ``call_id`` (signed at ``signed_at``); False if it was seen already."""
        now = time.time() if now is None else now
        self._expire(now)
        if call_id in self._seen:
            return False
        # a request signed at ``signed_at`` verifies until ``signed_at + window``
        self._seen[call_id] = max(now, signed_at) + self.window
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        # insertion order is (nearly) expiry order: the timestamps are all within the
        # window of the clock, so stop at the first live entry
        seen = self._seen
        while seen:
            key, until = next(iter(seen.items()))
            if until > now:
                return
            del seen[key]
