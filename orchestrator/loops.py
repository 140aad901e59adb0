"""Supervised background loops and the health they report.

Every background loop of the orchestrator (dispatcher, reducer, scheduler, lease renewal, prober,
SQLite checkpointer) is a ``pass_`` run over and over by ``supervise``: an exception is
logged, the loop is marked failing in ``Health`` (``/readyz`` answers 503 and says why),
and the pass runs again after a capped exponential backoff. A loop never ends while the
engine runs; only cancellation (``Engine.stop``) ends it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("orchestrator.loops")


class Health:
    """What is failing right now: loop or component name -> why."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}
        self.since: dict[str, float] = {}

    def failed(self, name: str, exc: BaseException | str) -> None:
        why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.failing[name] = why[:500]
        self.since.setdefault(name, time.time())

    def ok(self, name: str) -> None:
        if name in self.failing:
            del self.failing[name]
            log.warning("%s recovered after %.1fs", name, time.time() - self.since.pop(name))

    def problems(self) -> dict[str, str]:
        return dict(self.failing)


async def supervise(name: str, pass_: Callable[[], Awaitable[object]], health: Health, *,
                    first_delay: float = 0.1, max_delay: float = 2.0) -> None:
    """Run ``pass_`` forever. A pass that raises is logged and run again after a delay
    that doubles from ``first_delay`` up to ``max_delay`` (reset by a pass that
    succeeds); meanwhile ``health`` names the loop as failing."""
    delay = first_delay
    while True:
        try:
            await pass_()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if name not in health.failing:
                log.exception("%s failed; retrying with backoff (at most %ss)", name, max_delay)
            else:
                log.warning("%s failed again: %s: %s", name, type(exc).__name__, exc)
            health.failed(name, exc)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
        else:
            delay = first_delay
            health.ok(name)
