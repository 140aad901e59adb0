"""Rows as the REST API shows them."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

from orchestrator.engine import answers as a
from orchestrator.errors import ApiError
from orchestrator.store import RunCore, RunRow, RunSummaryRow, StepRow
from sdk import protocol as p


def stamp(ts: float) -> str:
    """A time the orchestrator took (``time.time()``: a run's or a schedule's creation) as
    ISO-8601 UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def iso(ts: float | None) -> str | None:
    """``ts`` as ISO-8601 UTC; None for None, and for a time no date-time can show (a row
    stored before the API checked times: it must not break every listing)."""
    if ts is None:
        return None
    try:
        return stamp(ts)
    except (ValueError, OverflowError, OSError):
        return None


def _j(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def waiting_view(waiting_json: str | None) -> a.Waiting | None:
    w = _j(waiting_json)
    if not w:
        return None
    out = {k: v for k, v in w.items() if k not in ("seq", "name")}
    for k in ("until", "at", "timeout_at"):
        if isinstance(out.get(k), int | float):
            out[k] = iso(out[k])
    return cast(a.Waiting, out)


def run_summary(r: RunSummaryRow) -> a.RunSummary:
    return {
        "id": r.id,
        "function": r.function,
        "status": cast(p.RunStatus, r.status),
        "attempt": r.attempt,
        "parent_id": r.parent_id,
        "task": r.task,
        "waiting": waiting_view(r.waiting_json) if r.status in ("queued", "running") else None,
        "error": _j(r.error_json),
        "created_at": stamp(r.created_at),
        "started_at": iso(r.started_at),
        "ended_at": iso(r.ended_at),
    }


def run_counts(counts: Mapping[str, int]) -> a.RunCounts:
    """Counts per status (``RunsRepo.counts``) with every status named, and the total."""
    c = {s.value: counts.get(s.value, 0) for s in p.RunStatus}
    return {"queued": c["queued"], "running": c["running"], "completed": c["completed"],
            "failed": c["failed"], "cancelled": c["cancelled"], "timed_out": c["timed_out"],
            "skipped": c["skipped"], "total": sum(counts.values())}


NOT_STARTED: Final = "not started"
"""The state of a workflow's task that has no run (yet, or ever: its workflow failed)."""


def workflow_tasks(declared: list[str], children: Sequence[RunCore]
                   ) -> list[a.Task]:
    """Every task a workflow declares (its on_failure task last), in order, with its run's
    id and status, or ``not started``. Task runs set aside by a replay (``<task>#<n>``)
    are among the children only."""
    runs = {c.parent_step: c for c in children if c.parent_step and "#" not in c.parent_step}
    return [{"name": n, "id": runs[n].id if n in runs else None,
             "status": cast(p.RunStatus, runs[n].status) if n in runs else NOT_STARTED}
            for n in declared]


def run_detail(r: RunRow, steps: Sequence[StepRow], children: Sequence[RunCore],
               declared_tasks: list[str] | None = None) -> a.Run:
    """The one representation of a run that ``GET /runs/{id}``, ``GET /runs/{id}/wait``
    and ``POST /runs?wait=`` answer with (lists show ``run_summary``).
    ``declared_tasks``: a workflow run's, listed under ``tasks`` with their state."""
    parents = _j(r.parents_json)
    failure = parents.pop("__failure__", None) if isinstance(parents, dict) else None
    out: a.Run = {
        **run_summary(r),  # type: ignore[typeddict-item]  # "tasks": below, workflows only
        "input": _j(r.input_json),
        "event": _j(r.event_json),
        "output": _j(r.output_json),
        "idempotency_key": r.idempotency_key,
        "priority": r.priority,
        "steps": [
            {
                "id": s.step_id,
                "name": s.name,
                "kind": cast(p.MemoKind, s.kind),
                "status": cast(p.StepStatus, s.status),
                "attempts": s.attempts,
                "output": _j(s.output_json),
                "error": _j(s.error_json),
                "started_at": iso(s.started_at),
                "ended_at": iso(s.ended_at),
                "deadline_at": iso(s.deadline_at),
            }
            for s in steps
        ],
        "children": [
            {"id": c.id, "function": c.function, "status": cast(p.RunStatus, c.status),
             "step": c.parent_step, "task": c.task}
            for c in children
        ],
        "failure": failure,
        "parents": parents,
        "history": [
            cast(a.HistoryEntry, {k: iso(v) if k in ("replayed_at", "started_at", "ended_at")
                                  else v for k, v in h.items()})
            for h in (_j(r.history_json) or [])
        ],
    }
    if declared_tasks is not None:
        out["tasks"] = workflow_tasks(declared_tasks, children)
    return out


def schedule_view(r: Mapping[str, Any]) -> a.Schedule:
    return {"id": r["id"], "function": r["function"], "at": iso(r["at"]),
            "input": _j(r["input_json"]), "run_id": r.get("run_id"),
            "created_at": stamp(r["created_at"]), "priority": r.get("priority")}


def cron_view(r: Mapping[str, Any]) -> a.Cron:
    return {"id": r["id"], "function": r["function"], "expression": r["expression"],
            "timezone": r["timezone"], "input": _j(r["input_json"]), "source": r["source"],
            "next_fire_at": iso(r["next_fire_at"]), "last_fire_at": iso(r.get("last_fire_at")),
            "created_at": stamp(r["created_at"]), "paused": bool(r.get("paused", False))}


def event_cursor(ts: float, eid: str) -> str:
    """The events list's cursor after the event (ts, eid): opaque, exact, stable."""
    return base64.urlsafe_b64encode(json.dumps([ts, eid]).encode()).decode().rstrip("=")


def read_event_cursor(cursor: str) -> tuple[float, str]:
    """The (ts, id) of an ``event_cursor``; anything else is 400 naming ``cursor``."""
    try:
        ts, eid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(ts, int | float) and not isinstance(ts, bool) and isinstance(eid, str):
            return float(ts), eid
    except (ValueError, TypeError):
        pass
    raise ApiError("'cursor' is not a cursor this API gave (a 'next_cursor')", "cursor")
