"""Flow control applied when runs are created (issue 13): throttle, rate limit, debounce,
singleton and batch (``sdk.flow``; docs/flow-control.md).

They apply to runs started by a trigger (REST run and bulk, events, schedules, crons):
runs with no parent and no workflow task. A child run or a workflow's task run is part of
a run already admitted, and starts as before. Everything happens in the caller's
transaction (``ingest.create_runs``), under the row lock of each key (``store.flow``), so
it holds across concurrent transactions and replicas.

For one trigger, in order: a debounce or batch may fold it into a pending run (no new run,
the trigger's answer is that run's id); otherwise a rate limit may drop it (a skipped run
saying why), a singleton may skip it or cancel the run it replaces, and a throttle may
delay it (its queue row falls due later).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.lifecycle import Effects, cancel_run
from orchestrator.engine.registry import FunctionInfo
from orchestrator.store import FlowSlot, QueueInsert, RunInsert, RunRow, Tx
from sdk import flow as f
from sdk import protocol as p

EPSILON_S = 1e-6
"""GCRA's times are compared to a microsecond (sums of ``period / limit`` drift in the
last bits of a float)."""
IDLE_S = 60.0
"""Flow state idle this long is deleted by the retention sweep (``Retention.sweep``)."""


# -- GCRA ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gcra:
    """The generic cell rate algorithm over one stored number, the theoretical arrival
    time (tat): starts are spaced ``interval = period / limit`` apart, with ``burst``
    allowed at once (a tolerance of ``(burst - 1) * interval``). Any window of ``period``
    (half-open) holds at most ``limit + burst - 1`` conforming starts."""

    interval: float
    tolerance: float

    @classmethod
    def of(cls, limit: int, period: float, burst: int = 1) -> Gcra:
        return cls(period / limit, period * (burst - 1) / limit)

    @staticmethod
    def clock(now: float, updated_at: float) -> float:
        """The time a key's arithmetic uses: never before its last update, so a clock
        that went backwards (a replica's behind another's) grants no extra starts; the
        key's time stands still until the clock catches up."""
        return max(now, updated_at)

    def admit(self, tat: float, now: float) -> tuple[bool, float]:
        """Rate limit: whether a trigger at ``now`` conforms, and the tat to store (the
        same when it does not: a dropped trigger uses no capacity)."""
        t = max(tat, now)
        if t - now > self.tolerance + EPSILON_S:
            return False, tat
        return True, t + self.interval

    def schedule(self, tat: float, now: float) -> tuple[float, float]:
        """Throttle: when a trigger at ``now`` may start (its first conforming time, never
        before ``now``), and the tat to store."""
        start = tat - self.tolerance
        if start <= now + EPSILON_S:
            start = now
        return start, max(tat, start) + self.interval


def _gcra(limit: f.Throttle | f.RateLimit) -> Gcra:
    return Gcra.of(limit.limit, float(limit.to_wire()["period"]), limit.burst)


# -- what a function declares ----------------------------------------------------------

_parsed: dict[int, tuple[FunctionInfo, f.FlowControl | None]] = {}


def controls(info: FunctionInfo | None) -> f.FlowControl | None:
    """The creation-time controls ``info`` declares (None: none), parsed once per
    registry entry."""
    if info is None:
        return None
    got = _parsed.get(id(info))
    if got is not None and got[0] is info:
        return got[1]
    cfg = info.config
    fc: f.FlowControl | None = None
    if any(cfg.get(k) is not None
           for k in ("throttle", "rate_limit", "debounce", "batch", "singleton")):
        fc = f.from_wire(cfg, info.name)
    if len(_parsed) > 4096:
        _parsed.clear()
    _parsed[id(info)] = (info, fc)
    return fc


def _view(input_json: str, event_json: str | None) -> dict[str, Any]:
    return {"input": json.loads(input_json),
            "event": json.loads(event_json) if event_json else None}


async def lock_keys(tx: Tx, specs: Sequence[tuple[str, str, str | None]],
                    infos: Mapping[str, FunctionInfo]) -> None:
    """Lock, in sorted order, every key the controls will touch for these triggers
    ((function, input_json, event_json) each; children and tasks are not triggers): see
    ``FlowRepo.lock_keys``. Called once for all the triggers of a transaction, before the
    first is admitted."""
    keys: list[str] = []
    for fn, input_json, event_json in specs:
        fc = controls(infos.get(fn))
        if fc is None:
            continue
        view = _view(input_json, event_json)
        for name in ("debounce", "batch", "singleton", "rate_limit", "throttle"):
            c = getattr(fc, name)
            if c is not None:
                keys.append(f"{name}|{fn}|{f.key_value(view, c.key)}")
    if keys:
        await tx.flow.lock_keys(keys)


# -- admission -------------------------------------------------------------------------

@dataclass
class Decision:
    """What the controls made of one trigger."""

    merged: str | None = None
    """Folded into this pending run (debounce, batch): no new run."""
    error: dict[str, Any] | None = None
    """Recorded as a skipped run with this error (rate limit, singleton skip)."""
    due: float | None = None
    """Its queue row falls due then, not at once (throttle, debounce, batch)."""
    events: list[dict[str, Any]] | None = None
    """A batch run's events so far (its first)."""

    throttled: bool = False
    """Its start is throttled: it goes through the claim (``hold_starts``), never
    created already claimed."""

    @property
    def claimable(self) -> bool:
        """May it be created already claimed: due at once, not waiting for more, and not
        throttled."""
        return self.due is None and self.events is None and not self.throttled


@dataclass
class _Pending:
    row: RunInsert
    queue: QueueInsert | None = None
    events: list[dict[str, Any]] | None = None


@dataclass
class Gate:
    """The controls over one ``create_runs`` call: runs it creates are not in the table
    until its end, so a later trigger in the same call that lands on one of them finds
    it here."""

    tx: Tx
    now: float
    fx: Effects
    pending: dict[str, _Pending] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    """Runs of this call cancelled by a later one (singleton ``cancel``) before being
    inserted: inserted cancelled, with no queue row."""

    async def admit(self, fc: f.FlowControl, info: FunctionInfo, row: RunInsert) -> Decision:
        """Apply ``fc`` to the new run ``row`` (not inserted yet). A decision with
        ``merged`` means the row is not to be inserted."""
        tx, now = self.tx, self.now
        view = _view(row["input_json"], row.get("event_json"))
        rid = row["id"]
        decision = Decision()
        batch = fc.batch if row.get("event_json") else None  # a direct run is not batched
        if fc.debounce is not None:
            slot_key = f"{info.name}|{f.key_value(view, fc.debounce.key)}"
            slot = await tx.flow.lock_slot("debounce", slot_key, rid, now)
            if not slot.created:
                if await self._debounce_into(slot, fc.debounce, row):
                    return Decision(merged=slot.run_id)
                await tx.flow.set_slot("debounce", slot_key, rid, now, 1)  # a new burst
            decision.due = now + float(fc.debounce.to_wire()["period"])
        elif batch is not None:
            slot_key = f"{info.name}|{f.key_value(view, batch.key)}"
            slot = await tx.flow.lock_slot("batch", slot_key, rid, now)
            if not slot.created:
                if await self._batch_into(slot, slot_key, batch, row):
                    return Decision(merged=slot.run_id)
                await tx.flow.set_slot("batch", slot_key, rid, now, 1)  # a new batch
            event = json.loads(row.get("event_json") or "{}")
            decision.events = [event]
            row["input_json"] = p.dumps([event.get("data")]).decode()
            row["events_json"] = p.dumps(decision.events).decode()
            decision.due = now if batch.max_size == 1 else now + float(
                batch.to_wire()["timeout"])
        if fc.rate_limit is not None:
            key = f"rate_limit|{info.name}|{f.key_value(view, fc.rate_limit.key)}"
            tat, updated = await tx.flow.lock_tat(key, now)
            t = Gcra.clock(now, updated)
            ok, new_tat = _gcra(fc.rate_limit).admit(tat, t)
            if not ok:
                rl = fc.rate_limit
                return Decision(error={
                    "type": "RateLimited",
                    "message": f"rate limit of {rl.limit} per {rl.to_wire()['period']:g} s"
                               f" (burst {rl.burst}) reached: this trigger was dropped",
                    "key": f.key_value(view, rl.key)})
            await tx.flow.set_tat(key, new_tat, t)
        if fc.singleton is not None:
            error = await self._singleton(fc.singleton, info, view, rid)
            if error is not None:
                return Decision(error=error)
        if fc.throttle is not None:
            key = f"throttle|{info.name}|{f.key_value(view, fc.throttle.key)}"
            tat, updated = await tx.flow.lock_tat(key, now)
            t = Gcra.clock(now, updated)
            start, new_tat = _gcra(fc.throttle).schedule(tat, t)
            await tx.flow.set_tat(key, new_tat, t)
            decision.throttled = True
            if start > now:
                decision.due = max(decision.due or now, start)
        return decision

    def track(self, row: RunInsert, queue: QueueInsert | None,
              events: list[dict[str, Any]] | None) -> None:
        """A run this call creates (its row and queue row as they will be inserted)."""
        self.pending[row["id"]] = _Pending(row, queue, events)

    async def _debounce_into(self, slot: FlowSlot, d: f.Debounce, row: RunInsert) -> bool:
        """Give the pending run of a burst the newer trigger; False if it was claimed,
        is gone or is due already (its quiet period or ``max_wait`` is over): the trigger
        opens a new burst."""
        period = float(d.to_wire()["period"])
        due = self.now + period
        if d.max_wait is not None:
            due = min(due, slot.opened_at + float(d.to_wire()["max_wait"]))
        local = self.pending.get(slot.run_id)
        if local is not None:
            if local.queue is None or local.queue["due_at"] <= self.now:
                return False
            local.row["input_json"] = row["input_json"]
            local.row["event_json"] = row.get("event_json")
            local.queue["due_at"] = due
            return True
        current = await self.tx.flow.pending(slot.run_id)
        if current is None or current <= self.now:
            return False  # claimed, or due already: this trigger opens a new burst
        await self.tx.flow.merge(slot.run_id, row["input_json"], row.get("event_json"),
                                 None, due)
        self.fx.due_at(due)
        return True

    async def _batch_into(self, slot: FlowSlot, slot_key: str, b: f.Batch,
                          row: RunInsert) -> bool:
        """Add the trigger's event to the open batch; False if the batch is full, was
        claimed, is gone or is due already (its timeout passed): the trigger opens a new
        batch."""
        if slot.size >= b.max_size:
            return False
        event = json.loads(row.get("event_json") or "{}")
        local = self.pending.get(slot.run_id)
        if local is not None:
            if local.queue is None or local.events is None or local.queue["due_at"] <= self.now:
                return False
            events = local.events
        else:
            current = await self.tx.flow.pending(slot.run_id)
            if current is None or current <= self.now:
                return False  # claimed, or due already (its timeout passed): a new batch
            events = json.loads(await self.tx.flow.events_of(slot.run_id) or "[]")
        events.append(event)
        size = slot.size + 1
        due = self.now if size >= b.max_size else None
        await self.tx.flow.set_slot("batch", slot_key, slot.run_id, slot.opened_at, size)
        input_json = p.dumps([e.get("data") for e in events]).decode()
        if local is not None:
            assert local.queue is not None
            local.row["input_json"] = input_json
            local.row["events_json"] = p.dumps(events).decode()
            if due is not None:
                local.queue["due_at"] = due
            return True
        first = json.dumps(events[0]) if events else None
        current_due = (slot.opened_at + float(b.to_wire()["timeout"])) if due is None else due
        await self.tx.flow.merge(slot.run_id, input_json, first, p.dumps(events).decode(),
                                 current_due)
        if due is not None:
            self.fx.wake = True
        return True

    async def _singleton(self, s: f.Singleton, info: FunctionInfo, view: Mapping[str, Any],
                         rid: str) -> dict[str, Any] | None:
        """None: the run may start (the key's slot is now its); else the error of the
        skipped run (mode ``skip`` with a run of the key active)."""
        key = f"{info.name}|{f.key_value(view, s.key)}"
        slot = await self.tx.flow.lock_slot("singleton", key, rid, self.now)
        if slot.created:
            return None
        local = self.pending.get(slot.run_id)
        active = (local.row.get("status") not in p.TERMINAL if local is not None
                  else await self.tx.flow.active(slot.run_id))
        if active and s.mode == "skip":
            return {"type": "SingletonSkipped",
                    "message": f"run {slot.run_id} of the same key is active: this trigger "
                               f"was skipped",
                    "key": f.key_value(view, s.key), "active_run": slot.run_id}
        if active:  # mode "cancel": the active run ends, this one starts
            error = {"type": "SingletonReplaced",
                     "message": f"cancelled: a newer trigger of the same key started run "
                                f"{rid}", "replaced_by": rid}
            if local is not None:
                local.row.update({"status": p.RunStatus.CANCELLED, "ended_at": self.now,
                                  "started_at": local.row.get("started_at") or self.now,
                                  "error_json": p.dumps(error).decode(),
                                  "timeout_at": None, "start_timeout_at": None})
                local.queue = None
                self.dropped.add(slot.run_id)
            else:
                run = await self.tx.runs.lock(slot.run_id)
                if run is not None and run.status not in p.TERMINAL:
                    await cancel_run(self.tx, run, p.RunStatus.CANCELLED, error, self.now,
                                     self.fx)
        await self.tx.flow.set_slot("singleton", key, rid, self.now, 1)
        return None


async def hold_starts(tx: Tx, runs: Sequence[RunRow], infos: Mapping[str, FunctionInfo],
                      now: float) -> dict[str, float]:
    """The throttle again, at the claim, over the runs' actual starts: of the queued runs
    a claim took (``runs``: each one's first start), those of a throttled function that
    do not conform now are held back (their queue rows due again at their first
    conforming time, lease released): {run id: due}.

    Creation already made each throttled run due at its turn (``Gate.admit``), so a claim
    on time finds it conforming; this catches runs that fell due together while the
    dispatcher was behind or the orchestrator down, which would otherwise start at once
    together. Keys are locked in sorted order (no deadlock between two claims)."""
    todo: list[tuple[str, str, f.Throttle]] = []
    for r in runs:
        if r.parent_id is not None or r.task is not None:
            continue
        fc = controls(infos.get(r.function))
        if fc is None or fc.throttle is None:
            continue
        value = f.key_value(_view(r.input_json, r.event_json), fc.throttle.key)
        todo.append((f"throttle-start|{r.function}|{value}", r.id, fc.throttle))
    held: dict[str, float] = {}
    for key, rid, th in sorted(todo, key=lambda x: (x[0], x[1])):
        tat, updated = await tx.flow.lock_tat(key, now)
        t = Gcra.clock(now, updated)
        g = _gcra(th)
        ok, new_tat = g.admit(tat, t)
        if ok:
            await tx.flow.set_tat(key, new_tat, t)
        else:
            held[rid] = max(tat, t) - g.tolerance
    if held:
        await tx.flow.hold(held)
    return held


def skipped(row: RunInsert, error: Mapping[str, Any], now: float) -> None:
    """Make ``row`` a skipped run saying why (``error``)."""
    row.update({"status": p.RunStatus.SKIPPED, "started_at": now, "ended_at": now,
                "timeout_at": None, "start_timeout_at": None,
                "error_json": p.dumps(dict(error)).decode()})

