"""Replay bookkeeping of one call: the memo, step ids, new steps, and the yield op.

Everything here is synchronous and free of I/O: the async and sync contexts are thin
facades over it, and only the running of the user's step callables differs between them.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdk import protocol as p
from sdk._kept import thaw
from sdk.errors import (
    ChildRunError,
    NonDeterminismError,
    NonRetriableError,
    RetryAfterError,
    StepError,
    UsageError,
)
from sdk.function import Retry

BUDGET_FRACTION = 0.8  # of the call's budget spent running new steps before yielding
CLOCK_TOLERANCE = 2.0
"""A recorded sleep ending within this many seconds counts as over (clocks of the app
and the orchestrator may differ a little); one woken earlier sleeps on."""
MAX_TIME = 1e12  # epoch seconds the protocol accepts (year 33658)


class Interrupt(BaseException):
    """Stops the user's function: the call's answer is ready (a yield).

    A ``BaseException`` so that a user's ``except Exception`` cannot swallow it.
    """


def _stack(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=8))
    return tb[-4000:]


def exception_info(exc: BaseException) -> p.ErrorInfo:
    """How a memo entry records ``exc``."""
    return p.error_info(type(exc).__name__, str(exc), _stack(exc))


def exception_body(exc: BaseException, *, retriable: bool,
                   retry_after_ms: int | p.Missing | None = None) -> p.ErrorBody:
    """The error answer's body for ``exc``."""
    return p.error_body(type(exc).__name__, str(exc), retriable=retriable,
                        retry_after_ms=retry_after_ms, stack=_stack(exc))


def recorded_failure(name: str, entry: p.MemoEntry) -> StepError:
    """The error a replay raises for a step the memo records as failed."""
    err: Mapping[str, Any] = entry.get("error") or {}
    return StepError(name, err.get("type", "Error"), err.get("message", ""))


@dataclass
class StepPlan:
    """A step the function asked for: already in the memo, or to be run now."""

    id: str
    seq: int
    name: str
    entry: p.MemoEntry | None
    retry: Retry
    started_at: float = field(default_factory=time.time)

    @property
    def done(self) -> bool:
        """Recorded as completed: a replay returns its output without running it."""
        return self.entry is not None and self.entry.get("status") == p.StepStatus.COMPLETED

    @property
    def attempts_before(self) -> int:
        return int(self.entry.get("attempts", 0)) if self.entry else 0


class Execution:
    """The state of one invoke call of one run."""

    def __init__(self, request: p.InvokeRequest, retry: Retry, request_bytes: int,
                 memo: list[p.MemoEntry] | None = None) -> None:
        """``memo``: the run's whole memo, when the request carries only its tail
        (``sdk._kept``); ``request_bytes`` then counts the kept head's bytes too."""
        self.request = request
        self.retry = retry
        self.memo = request["memo"] if memo is None else memo
        self.memo_by_id: dict[str, p.MemoEntry] = {}
        self.seqs: set[int] = set()
        for entry in self.memo:
            self.memo_by_id[entry["id"]] = entry
            self.seqs.add(entry["seq"])
        self.counters: dict[str, int] = {}
        self.assigned: set[str] = set()
        self.failure: Exception | None = None
        self.next_seq = 0
        self.new_steps: list[p.MemoEntry] = []
        self.events: list[p.AnswerEvent] = []
        self.op: p.AnyOp | None = None
        self.memo_bytes = request_bytes
        budget_s = max(0.05, request["budget_ms"] / 1000.0)
        self.deadline = time.monotonic() + budget_s * BUDGET_FRACTION

    # -- ids and replay --------------------------------------------------------------------

    def begin(self, name: str, kind: p.MemoKind) -> tuple[str, int, p.MemoEntry | None]:
        """Assign the next deterministic id to a step named ``name``; find its memo.

        On the replay's hot path (once per step of the memo, on every call): the name is
        checked only the first time it is seen."""
        n = self.counters.get(name)
        if n is None:
            if not isinstance(name, str) or not name or len(name) > 256:
                raise UsageError("a step needs a non-empty string name (at most 256 "
                                 "characters)")
            n = 0
            step_id = name
        else:
            step_id = f"{name}:{n}"
        assigned = self.assigned
        while step_id in assigned:  # "a", "a:1", "a" must not collide
            n += 1
            step_id = f"{name}:{n}"
        self.counters[name] = n + 1
        assigned.add(step_id)
        seq = self.next_seq
        self.next_seq = seq + 1
        entry = self.memo_by_id.get(step_id)
        if entry is not None:
            if entry["seq"] != seq or entry["kind"] != kind:
                self.fail(NonDeterminismError(
                    f"replay asked for {kind} step {step_id!r} at position {seq}, but the "
                    f"run's memo records it as a {entry['kind']} step at position "
                    f"{entry['seq']}: the function's code changed its order of steps"
                ))
        elif seq in self.seqs:
            recorded = next(e for e in self.memo_by_id.values() if e["seq"] == seq)
            self.fail(NonDeterminismError(
                f"replay asked for step {step_id!r} at position {seq}, but the run's memo "
                f"records step {recorded['id']!r} there: the function's code changed"
            ))
        return step_id, seq, entry

    def fail(self, exc: Exception) -> None:
        """Stop the function for good with ``exc``; user code cannot catch this."""
        self.failure = exc
        raise Interrupt()

    def check_budget(self) -> None:
        """Yield (to be called again at once) when this call has used its time budget."""
        if self.new_steps and time.monotonic() >= self.deadline:
            self.suspend(p.resume_op(time.time()))

    def suspend(self, op: p.AnyOp) -> None:
        try:
            p.dumps(op)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{op['op']} {op.get('name', '')!r}: not JSON: {exc}") from None
        self.op = op
        raise Interrupt()

    def record(self, entry: p.MemoEntry, output_bytes: int = 0) -> None:
        self.memo_bytes += output_bytes
        self.new_steps.append(entry)

    # -- step.run -------------------------------------------------------------------------

    def step_begin(self, name: str, retry: Retry | None) -> StepPlan:
        step_id, seq, entry = self.begin(name, p.MemoKind.STEP)
        plan = StepPlan(step_id, seq, name, entry, retry or self.retry)
        if entry is not None:
            status = entry.get("status")
            if status == p.StepStatus.COMPLETED:
                return plan
            if status == p.StepStatus.FAILED:
                raise recorded_failure(name, entry)
        self.check_budget()
        plan.started_at = time.time()
        return plan

    @staticmethod
    def _entry(plan: StepPlan, status: p.StepStatus, output: Any = p.MISSING,
               error: p.ErrorInfo | None = None) -> p.MemoEntry:
        return p.memo_entry(plan.id, plan.seq, plan.name, p.MemoKind.STEP, status,
                            attempts=plan.attempts_before + 1, output=output, error=error,
                            started_at=plan.started_at, ended_at=time.time())

    def step_succeeded(self, plan: StepPlan, output: Any) -> Any:
        try:
            data = p.dumps_value(output)
        except (TypeError, ValueError) as exc:
            return self._fail_step(plan, "SerializationError", f"output is not JSON: {exc}")
        if len(data) > p.MAX_STEP_OUTPUT_BYTES:
            return self._fail_step(
                plan,
                p.ErrorCode.OUTPUT_TOO_LARGE,
                f"output is {len(data)} bytes; the limit is {p.MAX_STEP_OUTPUT_BYTES}",
            )
        if self.memo_bytes + len(data) > p.MAX_MEMO_BYTES:
            return self._fail_step(
                plan,
                p.ErrorCode.OUTPUT_TOO_LARGE,
                f"the run's memo would exceed {p.MAX_MEMO_BYTES} bytes",
            )
        value = p.loads(data)  # the first run sees what a replay will see
        # the recorded output is a copy: user code may change what it got back before
        # the answer is sent
        self.record(self._entry(plan, p.StepStatus.COMPLETED, output=thaw(value)),
                    len(data))
        return value

    def step_failed(self, plan: StepPlan, exc: Exception) -> Any:
        attempt = plan.attempts_before + 1
        info = exception_info(exc)
        if isinstance(exc, NonRetriableError) or attempt >= plan.retry.max_attempts:
            return self._fail_step(plan, info["type"], info["message"], info)
        delay = exc.delay if isinstance(exc, RetryAfterError) else plan.retry.delay(attempt)
        delay = min(max(0.0, delay), 86400.0 * 365) if delay == delay else 0.0
        self.record(self._entry(plan, p.StepStatus.RETRYING, error=info))
        self.suspend(p.resume_op(time.time() + delay))

    def _fail_step(
        self, plan: StepPlan, type_: str, message: str, info: p.ErrorInfo | None = None
    ) -> Any:
        error = info or p.error_info(type_, message)
        self.record(self._entry(plan, p.StepStatus.FAILED, error=error))
        raise StepError(plan.name, type_, message)

    @staticmethod
    def replayed_output(plan: StepPlan) -> Any:
        assert plan.entry is not None
        return thaw(plan.entry.get("output"))

    # -- blocking operations --------------------------------------------------------------

    @staticmethod
    def _time(t: float, what: str) -> float:
        if not isinstance(t, int | float) or not (0 <= t < MAX_TIME):  # NaN fails too
            raise UsageError(f"{what} is out of range")
        return float(t)

    def sleep_until(self, name: str, until: float) -> None:
        until = self._time(until, "a sleep's end")
        step_id, seq, entry = self.begin(name, p.MemoKind.SLEEP)
        if entry is not None:
            recorded = entry.get("output")
            if isinstance(recorded, int | float) and recorded > time.time() + CLOCK_TOLERANCE:
                until = recorded  # woken early: sleep on until the recorded time
            else:
                return
        elif until <= time.time():
            self.record(p.memo_entry(step_id, seq, name, p.MemoKind.SLEEP, output=until))
            return
        self.suspend(p.sleep_op(step_id, seq, name, until))

    def wait_for_event(
        self,
        name: str,
        event: str,
        match: Mapping[str, Any] | None,
        timeout_at: float | None,
        lookback: float | None = None,
    ) -> Any:
        step_id, seq, entry = self.begin(name, p.MemoKind.WAIT)
        if entry is not None:
            return thaw(entry.get("output"))
        if timeout_at is not None:
            timeout_at = self._time(timeout_at, "a wait's timeout")
        if lookback is not None and not p.is_lookback(lookback):
            raise UsageError(f"wait_for_event lookback must be seconds (or a timedelta) in "
                             f"[0, {p.MAX_LOOKBACK_S:g}], not {lookback!r}")
        match = dict(match or {})
        for path, value in match.items():
            if not isinstance(path, str) or not path or "," in path:
                raise UsageError("wait_for_event match keys are dotted paths, e.g. 'data.id'")
            if not (value is None or isinstance(value, str | int | float | bool)):
                raise UsageError(f"wait_for_event match values must be JSON scalars, not "
                                 f"{type(value).__name__} (not JSON)")
        self.suspend(p.wait_event_op(step_id, seq, name, event, match, timeout_at,
                                     float(lookback) if lookback else None))

    def spawn(self, name: str, children: list[p.ChildSpec], wait: bool) -> Any:
        kind = p.MemoKind.CHILDREN if wait else p.MemoKind.SPAWN
        step_id, seq, entry = self.begin(name, kind)
        if entry is not None:
            out = thaw(entry.get("output")) or []
            if entry.get("status") == p.StepStatus.FAILED:
                raise recorded_failure(name, entry)
            if not wait:
                return out
            if any(r.get("status") != "completed" for r in out):
                raise ChildRunError(name, out)
            return [r.get("output") for r in out]
        try:
            size = len(p.dumps_value(children))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"child inputs must be JSON: {exc}") from exc
        if size > p.MAX_STEP_OUTPUT_BYTES:
            raise UsageError(f"child inputs are {size} bytes; the limit is "
                             f"{p.MAX_STEP_OUTPUT_BYTES}")
        self.suspend(p.spawn_op(step_id, seq, name, children, wait))

    def send_events(self, name: str, events: Sequence[Mapping[str, Any]]) -> list[str]:
        step_id, seq, entry = self.begin(name, p.MemoKind.SEND_EVENT)
        if entry is not None:
            return list(thaw(entry.get("output")) or [])
        self.check_budget()
        prepared: list[p.AnswerEvent] = []
        ids: list[str] = []
        for ev in events:
            if not isinstance(ev, Mapping) or not isinstance(ev.get("name"), str) \
                    or not p.EVENT_NAME_RE.match(ev["name"]):
                raise UsageError("an event is a mapping with a 'name' of 1-128 letters, "
                                 "digits, '_', '-', '.', ':'")
            if ev.get("data") is not None and not isinstance(ev.get("data"), Mapping):
                raise UsageError("an event's 'data' must be a mapping")
            ev_id = ev.get("id") or uuid.uuid4().hex
            e = p.answer_event(ev_id, ev["name"], ev.get("data", {}))
            try:
                size = len(p.dumps_value(e))
            except (TypeError, ValueError) as exc:
                raise UsageError(f"event {ev['name']!r} is not JSON: {exc}") from None
            if size > p.MAX_EVENT_BYTES:
                raise UsageError(f"event {ev['name']!r} exceeds {p.MAX_EVENT_BYTES} bytes")
            prepared.append(e)
            ids.append(str(ev_id))
        now = time.time()
        self.record(p.memo_entry(step_id, seq, name, p.MemoKind.SEND_EVENT, output=ids,
                                 started_at=now, ended_at=now))
        self.events.extend(prepared)
        return ids

    # -- the answer -----------------------------------------------------------------------

    def complete(self, output: Any, *, skipped: bool = False) -> p.CompleteAnswer:
        return p.answer_complete(self.request["call_id"], self.new_steps, self.events, output,
                                 skipped=skipped)

    def yielded(self, op: p.AnyOp) -> p.YieldAnswer:
        return p.answer_yield(self.request["call_id"], self.new_steps, self.events, op)

    def errored(self, error: p.ErrorBody) -> p.ErrorAnswer:
        return p.answer_error(self.request["call_id"], self.new_steps, self.events, error)
