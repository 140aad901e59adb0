"""A function's flow control in words, for its page; a run's priority, for its own.

The config is the one the app registered (``GET /functions`` shows it as declared), read
back with ``sdk.flow.from_wire``; a config this orchestrator cannot read (an older or
newer shape) is shown as its JSON rather than failing the page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sdk import flow


@dataclass(frozen=True)
class Control:
    """One declared control: its name (the config's key) and what it does, in words."""

    name: str
    words: str


def _s(seconds: float) -> str:
    return f"{seconds:g} s"


def _per(key: str | None, group: str = "across all its runs") -> str:
    return f"per value of {key}" if key else group


def _concurrency(c: flow.Concurrency) -> str:
    return (f"at most {c.limit} running at once {_per(c.key)}; runs over the limit wait "
            f"in order (a sleeping or waiting run holds no slot)")


def _seconds(v: float | timedelta) -> float:
    return v.total_seconds() if isinstance(v, timedelta) else float(v)


def _rate(r: flow.Throttle | flow.RateLimit, noun: str, excess: str) -> str:
    burst = f", bursts of up to {r.burst} at once" if r.burst > 1 else ""
    return (f"at most {r.limit} {noun} per {_s(_seconds(r.period))} {_per(r.key)}{burst}; "
            f"{excess}")


def describe(config: Mapping[str, Any]) -> list[Control]:
    """The controls a function's (or a workflow task's) config declares, in the order of
    ``sdk.flow.FLOW_KEYS``."""
    try:
        fc = flow.from_wire(config, "function")
    except ValueError:
        return [Control(k, json.dumps(config[k], sort_keys=True)) for k in flow.FLOW_KEYS
                if config.get(k) is not None]
    out = [Control("concurrency", _concurrency(c)) for c in fc.concurrency]
    if fc.throttle is not None:
        out.append(Control("throttle", _rate(fc.throttle, "starts",
                                             "the excess is queued and starts later")))
    if fc.rate_limit is not None:
        out.append(Control("rate limit", _rate(fc.rate_limit, "runs",
                                               "the excess is dropped, recorded as a "
                                               "skipped run with the reason")))
    if (d := fc.debounce) is not None:
        cap = (f" (at most {_s(_seconds(d.max_wait))} after the burst's first)"
               if d.max_wait is not None else "")
        out.append(Control("debounce", f"one run per burst of triggers {_per(d.key)}: it "
                                       f"starts once none has come for "
                                       f"{_s(_seconds(d.period))}{cap}, with the last "
                                       f"trigger's input and event"))
    if (b := fc.batch) is not None:
        out.append(Control("batch", f"runs of up to {b.max_size} events {_per(b.key)}: a "
                                    f"batch starts when full, or {_s(_seconds(b.timeout))} "
                                    f"after its first event"))
    if (g := fc.singleton) is not None:
        what = ("a new trigger while one is active is skipped, recorded with the reason"
                if g.mode == "skip" else
                "a new trigger cancels the active run and starts")
        out.append(Control("singleton", f"at most one run at a time "
                                        f"{_per(g.key, 'for the function')}: {what}"))
    if (pr := fc.priority) is not None:
        by_key = f", else the value at {pr.key} (an integer 1-10)" if pr.key else ""
        out.append(Control("priority", f"the trigger's priority if given{by_key}, else "
                                       f"{pr.default}; higher is claimed first (1 lowest, "
                                       f"{flow.MAX_PRIORITY} highest), older runs age "
                                       f"upward so none starves"))
    return out


def task_concurrency(task: Mapping[str, Any]) -> str:
    """A workflow task's concurrency limits in words ("" without any)."""
    return "; ".join(c.words for c in describe({"concurrency": task.get("concurrency")})
                     if task.get("concurrency"))


def priority_label(run: Mapping[str, Any]) -> str | None:
    """A run's priority when it is not the default (None otherwise, or when the run does
    not say: an orchestrator before flow control, or a view without it)."""
    value = run.get("priority")
    if isinstance(value, int) and not isinstance(value, bool) \
            and value != flow.DEFAULT_PRIORITY:
        return str(value)
    return None
