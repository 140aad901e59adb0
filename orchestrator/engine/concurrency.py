"""Concurrency limits and priority (issue 13), enforced by the claim.

A run of a function that declares ``concurrency`` gets, on its queue row, the groups its
calls count against (``ckey1``/``ckey2``: ``<function>[/<task>]#<i>|<key value>``, one
per declared limit). A slot is a row of the group with a live lease: a run sleeping or
waiting has released its lease (its row is due later, or never), a run whose lease
expired holds none. The plain claim leaves grouped rows alone; ``claim_limited`` takes
them in claim order, counts the slots their groups hold (``flow_leases``: the leases it
took that are still live, so the count costs the calls in flight, not the backlog) and
leases only what fits, under a lock that serializes it across replicas
(``QueueRepo.lock_limited``). Rows are never
created already claimed for a limited function, so nothing bypasses the count.

A workflow's task runs count against the task's own limits if it declares any, else
against the workflow's (all its tasks' calls together).

A run's priority (1-10) is the trigger's ``priority=``, else the function's declaration
(``sdk.flow.priority_of``), else its parent's (children, workflow task runs), else 1.
Its queue row ranks as due ``(priority - 1) * 60`` s sooner (``QueueRepo``, ``rank_at``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.registry import FunctionInfo, Registry
from orchestrator.store import ClaimedRow, QueueFlow, Tx
from sdk import flow

PAGE = 256
"""Candidates read per statement by the limited claim (the first: twice what it wants)."""
MAX_SCAN = 2048
"""At most this many candidates read per limited claim (groups full are skipped over)."""


@dataclass(frozen=True)
class Declared:
    """What a function declares that this module enforces, parsed once per FunctionInfo."""

    limits: tuple[flow.Concurrency, ...]
    task_limits: dict[str, tuple[flow.Concurrency, ...]]
    priority: flow.Priority | None

    def limits_for(self, task: str | None) -> tuple[str, tuple[flow.Concurrency, ...]] | None:
        """The group prefix and limits a run of ``task`` (None: the function's own run)
        counts against; None without limits."""
        if task is not None and task in self.task_limits:
            return f"/{task}", self.task_limits[task]
        return ("", self.limits) if self.limits else None


_cache: dict[int, tuple[FunctionInfo, Declared]] = {}


def declared(info: FunctionInfo) -> Declared:
    hit = _cache.get(id(info))
    if hit is not None and hit[0] is info:
        return hit[1]
    cfg = info.config
    fc = flow.from_wire(cfg, f"function {info.name!r}")
    tasks = [*cfg.get("tasks", []), *([cfg["on_failure"]] if cfg.get("on_failure") else [])]
    task_limits = {t["name"]: flow.from_wire(t, f"task {t['name']!r}").concurrency
                   for t in tasks if t.get("concurrency")}
    d = Declared(fc.concurrency, task_limits, fc.priority)
    if len(_cache) > 4096:
        _cache.clear()
    _cache[id(info)] = (info, d)
    return d


def limited(info: FunctionInfo) -> bool:
    """Whether any of the function's runs count against a concurrency limit."""
    d = declared(info)
    return bool(d.limits or d.task_limits)


def _view(input_json: str, event_json: str | None) -> dict[str, Any]:
    return {"input": json.loads(input_json),
            "event": json.loads(event_json) if event_json else None}


def queue_flow(info: FunctionInfo | None, task: str | None, input_json: str,
               event_json: str | None, given: int | None = None,
               inherited: int | None = None) -> QueueFlow:
    """A new run's priority and concurrency groups. The run's input and event are parsed
    only when a key needs them."""
    if info is None:
        return QueueFlow(given if given is not None else inherited or flow.DEFAULT_PRIORITY)
    d = declared(info)
    scope = d.limits_for(task)
    needs_view = (scope is not None and any(c.key for c in scope[1])) or (
        given is None and d.priority is not None and d.priority.key is not None
        and (task is None or inherited is None))
    view = _view(input_json, event_json) if needs_view else {}
    if given is not None:
        prio = flow.check_priority(given)
    elif inherited is not None and (task is not None or d.priority is None):
        prio = inherited  # a task run has its workflow run's; a child, its parent's
    else:
        prio = flow.priority_of(view, d.priority)
    if scope is None:
        return QueueFlow(prio)
    prefix, limits = scope
    keys = [f"{info.name}{prefix}#{i}|{flow.key_value(view, c.key)}"
            for i, c in enumerate(limits)]
    return QueueFlow(prio, keys[0], keys[1] if len(keys) > 1 else None)


def limit_of_group(fns: Mapping[str, FunctionInfo], group: str) -> int | None:
    """The limit a group's slots are counted against now (None: no longer declared, or
    the function unknown: not limited)."""
    head = group.partition("|")[0]
    scope, _, index = head.rpartition("#")
    name, _, task = scope.partition("/")
    info = fns.get(name)
    if info is None or not index.isdigit():
        return None
    d = declared(info)
    limits = d.task_limits.get(task, ()) if task else d.limits
    i = int(index)
    return limits[i].limit if i < len(limits) else None


def _function_of(group: str) -> str:
    return group.partition("|")[0].rpartition("#")[0].partition("/")[0]


async def claim_limited(tx: Tx, registry: Registry, owner: str, now: float, until: float,
                        want: int) -> list[ClaimedRow]:
    """Lease up to ``want`` due rows in concurrency groups, in claim order, each only if
    every group it is in has a free slot. A group full is passed over (its rows keep
    their place); a row of a group with room behind it is taken."""
    if want <= 0:
        return []
    after: tuple[float, str] = (float("-inf"), "")
    size = min(PAGE, max(2 * want, 32))  # enough when few groups are full; more pages if not
    page = await tx.queue.limited_candidates(now, size, after)
    if not page:
        return []
    await tx.queue.lock_limited()  # before the slots are counted
    held = await tx.queue.slots(now)
    limits: dict[str, int | None] = {}
    chosen: list[str] = []
    scanned = 0
    while page:
        scanned += len(page)
        new = {g for r in page for g in (r[2], r[3]) if g is not None and g not in limits}
        if new:
            fns = await registry.get_many({_function_of(g) for g in new})
            for g in new:
                held.setdefault(g, 0)
                limits[g] = limit_of_group(fns, g)
        for rid, _, g1, g2 in page:
            gs = [g for g in (g1, g2) if g is not None]
            if all((lim := limits[g]) is None or held[g] < lim for g in gs):
                chosen.append(rid)
                for g in gs:
                    held[g] += 1
                if len(chosen) >= want:
                    break
        if len(chosen) >= want or len(page) < size or scanned >= MAX_SCAN:
            break
        after = (page[-1][1], page[-1][0])
        size = PAGE
        page = await tx.queue.limited_candidates(now, size, after)
    return await tx.queue.lease_limited(owner, chosen, now, until)
