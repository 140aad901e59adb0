"""Which runs' apps keep the head of their memo: where the next call's memo may start.

An app's answer says how many leading memo entries its process kept (``memo_kept``,
``sdk._kept``); the next call of the run may then carry only the entries from there on
(``memo_from``), read from the store without the head. What is remembered here is only
a hint, in memory: another replica, or this one restarted, sends the whole memo; an app
process that does not have the head (another instance, restarted) answers
``memo_needed`` and is sent the whole memo at once (``Dispatcher._call``).

The head is bounded by what this replica itself sent and saw final (an entry is final
unless it is a retrying step: the store never rewrites a final one). A replay rewrites
a run's memo and appends to its history: ``memo_epoch`` follows the history's length,
so a head remembered from before a replay (by any replica) is never offered after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from orchestrator.store import RunRow, StepRow
from sdk import protocol as p

MAX_RUNS = 100_000
"""Runs remembered at most (the least recently used are forgotten first)."""


def memo_epoch(run: RunRow) -> int:
    """Changes whenever a replay rewrites the run's memo: each replay appends an entry
    to ``history_json`` (and nothing shortens it), so its length grows."""
    return len(run.history_json or "")


def final_head(start: int, rows: Sequence[StepRow]) -> int:
    """The length of the memo's final head: ``start`` entries known final, then ``rows``
    (the entries from position ``start`` on, in order) while they go on without a gap
    and are final."""
    n = start
    for r in rows:
        if r.seq != n or r.status == p.StepStatus.RETRYING:
            break
        n += 1
    return n


class MemoTails:
    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self.max_runs = max_runs
        self._kept: OrderedDict[str, tuple[int, int]] = OrderedDict()  # run -> epoch, n

    def __len__(self) -> int:
        return len(self._kept)

    def offer(self, runs: Mapping[str, RunRow], run_ids: Sequence[str]) -> dict[str, int]:
        """Where the memo of each run (of ``run_ids``) whose app keeps a head may start;
        runs not named start at 0."""
        out: dict[str, int] = {}
        kept = self._kept
        if not kept:
            return out
        for rid in run_ids:
            k = kept.get(rid)
            if k is not None and rid in runs:
                if k[0] == memo_epoch(runs[rid]):
                    out[rid] = k[1]
                else:
                    del kept[rid]
        return out

    def learn(self, run: RunRow, start: int, rows: Sequence[StepRow],
              answer: p.Answer) -> None:
        """After an answer to a call whose memo started at ``start`` with ``rows``:
        remember the head the app kept (at most what was sent and final)."""
        rid = run.id
        said = answer.get("memo_kept") or 0
        if answer["status"] == p.Status.COMPLETE or said <= 0:
            self._kept.pop(rid, None)
            return
        n = min(said, final_head(start, rows))
        if n <= 0:
            self._kept.pop(rid, None)
            return
        self._kept[rid] = (memo_epoch(run), n)
        self._kept.move_to_end(rid)
        while len(self._kept) > self.max_runs:
            self._kept.popitem(last=False)

    def forget(self, run_id: str) -> None:
        self._kept.pop(run_id, None)
