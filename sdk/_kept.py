"""Memos an endpoint keeps between the calls of a run, so that the orchestrator can send
only their tail (docs/protocol.md, "Kept memos").

Every call of a run used to carry its whole memo: a loop's 1,000th iteration sent 2,000
entries, parsed them and rebuilt them. Now a process keeps, per run, the head of the memo
it was sent whose entries can no longer change (all but a retrying step's: the store
never overwrites a final entry), and says how many in its answer (``memo_kept``); the
next request may carry ``memo_from`` and only the entries from there on. A process that
does not keep that head (another instance, restarted, evicted) answers ``memo_needed``
without running anything, and is sent the whole memo at once. A replay, which rewrites a
run's memo, changes its ``memo_epoch``: a head kept from another epoch is never used.

Only entries the orchestrator sent are kept, never the ones this process produced, so
what is kept is what the store holds. Entries are copied when kept, and a replay hands
user code a copy of a list or object output (``thaw``), so code that mutates what a step
returned cannot change what the next replay sees. Bounded: the least recently
used runs go first, past ``max_runs`` or ``max_bytes``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

from sdk import protocol as p

MIN_KEPT = 8
"""A memo with a shorter final head is sent whole each time: keeping it saves nothing."""
DEFAULT_MAX_RUNS = 10_000
DEFAULT_MAX_BYTES = 64 << 20


_CONTAINERS = (list, dict)


def fresh(value: Any) -> Any:
    """A deep copy of a JSON value (lists and objects copied, scalars shared): much
    faster than ``copy.deepcopy`` or a JSON round trip for the small values steps
    return."""
    t = type(value)
    if t is list:
        return [fresh(x) if type(x) in _CONTAINERS else x for x in value]
    if t is dict:
        return {k: fresh(x) if type(x) in _CONTAINERS else x for k, x in value.items()}
    return value


def thaw(value: Any) -> Any:
    """A memo entry's output as a replay hands it to user code: a copy of a list or an
    object, which user code may change without changing what a later replay sees (the
    entries of a kept memo outlive the call)."""
    return fresh(value) if type(value) in _CONTAINERS else value


@dataclass(slots=True)
class _Head:
    epoch: int
    entries: list[p.MemoEntry] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    """Cumulative JSON bytes: ``sizes[i]`` of ``entries[:i + 1]``."""

    @property
    def size(self) -> int:
        return self.sizes[-1] if self.sizes else 0


def _final(entry: p.MemoEntry) -> bool:
    return entry.get("status") != p.StepStatus.RETRYING


def _snapshot(entry: p.MemoEntry) -> tuple[p.MemoEntry, int]:
    """A copy of ``entry`` to keep, taken before user code sees it, and its bytes."""
    kept = cast(p.MemoEntry, fresh(entry))
    return kept, len(p.dumps_value(entry))


class KeptMemos:
    """The memo heads one endpoint process keeps, by run id (thread-safe: WSGI servers
    run requests in threads)."""

    def __init__(self, max_runs: int = DEFAULT_MAX_RUNS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_runs = max_runs
        self.max_bytes = max_bytes
        self._heads: OrderedDict[str, _Head] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._heads)

    @property
    def bytes(self) -> int:
        return self._bytes

    def memo_of(self, request: p.InvokeRequest) -> tuple[list[p.MemoEntry], int] | None:
        """The request's whole memo (the kept head, then the tail it carries) and the
        kept head's bytes; None if the request carries a tail and this process does not
        keep the head it follows (the answer is then ``memo_needed``)."""
        start = request.get("memo_from") or 0
        tail = request["memo"]
        if start <= 0:
            return tail, 0
        with self._lock:
            head = self._heads.get(request["run"]["id"])
            if head is None or head.epoch != request.get("memo_epoch") \
                    or len(head.entries) < start:
                return None
            self._heads.move_to_end(request["run"]["id"])
            return head.entries[:start] + [e for e in tail if e["seq"] >= start], \
                head.sizes[start - 1]

    def keep(self, request: p.InvokeRequest, memo: list[p.MemoEntry]) -> int:
        """Keep the final head of ``memo`` (the request's whole memo, ``memo_of``) before
        user code sees it; how many entries are kept (0: none)."""
        epoch = request.get("memo_epoch")
        rid = request["run"]["id"]
        if epoch is None:
            return 0
        start = request.get("memo_from") or 0  # the entries before it are a kept head's
        n = start
        for e in memo[start:]:
            if e["seq"] != n or not _final(e):
                break
            n += 1
        with self._lock:
            if n < MIN_KEPT:
                self._drop(rid)
                return 0
            head = self._heads.get(rid)
            if head is None or head.epoch != epoch:  # ``memo`` is the request's own
                self._drop(rid)
                head = self._heads[rid] = _Head(epoch)
            self._bytes -= head.size
            if len(head.entries) > n:  # sent a shorter final head than kept: trust it
                del head.entries[n:], head.sizes[n:]
            for e in memo[len(head.entries):n]:
                kept, size = _snapshot(e)
                head.entries.append(kept)
                head.sizes.append(head.size + size)
            self._bytes += head.size
            self._heads.move_to_end(rid)
            while self._heads and (len(self._heads) > self.max_runs
                                   or self._bytes > self.max_bytes):
                _, old = self._heads.popitem(last=False)
                self._bytes -= old.size
        return n if rid in self._heads else 0

    def drop(self, run_id: str) -> None:
        """Forget a run's memo (it ended)."""
        with self._lock:
            self._drop(run_id)

    def _drop(self, run_id: str) -> None:
        head = self._heads.pop(run_id, None)
        if head is not None:
            self._bytes -= head.size
