"""Exceptions users raise and catch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


class DurableError(Exception):
    """Base class of the SDK's own errors."""


class NonRetriableError(DurableError):
    """Raise from a step or function to fail it now, without further retries."""


class RetryAfterError(DurableError):
    """Raise from a step or function to be retried after ``delay`` (seconds or timedelta)."""

    def __init__(self, message: str, delay: float | timedelta) -> None:
        super().__init__(message)
        self.delay = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)


class StepError(DurableError):
    """A step failed for good (its retries are spent); raised inside the function."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.error_message = message


class ChildRunError(DurableError):
    """One or more child runs did not complete; ``results`` holds every child's outcome."""

    def __init__(self, step: str, results: list[dict[str, Any]]) -> None:
        failed = [r for r in results if r.get("status") != "completed"]
        first = failed[0] if failed else {}
        err = first.get("error") or {}
        super().__init__(
            f"{len(failed)} of {len(results)} child runs of {step!r} did not complete "
            f"(first: {first.get('run_id')} {first.get('status')}: {err.get('message', '')})"
        )
        self.step = step
        self.results = results


class NonDeterminismError(DurableError):
    """A replay met a different step than the run's memo records at that position.

    The run fails at once: a user's ``except Exception`` around the step cannot swallow
    it (the SDK stops the function with an uncatchable interrupt and reports this error).
    """


class UsageError(NonRetriableError, TypeError):
    """The step API was called with arguments it cannot accept (not JSON, bad names...)."""


class InputValidationError(DurableError):
    """The input of a run does not validate against the function's input model."""


class OrchestratorError(DurableError):
    """The orchestrator refused a request (``status`` is its HTTP status)."""

    def __init__(self, status: int, body: Any) -> None:
        msg = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"orchestrator answered {status}: {msg}")
        self.status = status
        self.body = body


class RunFailedError(DurableError):
    """A run awaited with ``run()`` ended failed or cancelled."""

    def __init__(self, run: dict[str, Any]) -> None:
        err = run.get("error") or {}
        super().__init__(
            f"run {run.get('id')} {run.get('status')}: "
            f"{err.get('type', '')}: {err.get('message', '')}"
        )
        self.run = run


class RunSkippedError(RunFailedError):
    """A run awaited with ``run()`` was skipped rather than run: flow control dropped its
    trigger (``reason`` is ``"RateLimited"`` or ``"SingletonSkipped"``; ``error`` the
    run's recorded error, with the key and, for a singleton, the ``active_run``), or a
    workflow's condition skipped it (``reason`` None)."""

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(run)
        self.error: dict[str, Any] = run.get("error") or {}
        self.reason: str | None = self.error.get("type")
