"""Declaring durable functions: the ``task`` decorator, retry policies, input models."""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sdk.errors import InputValidationError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


@dataclass(frozen=True)
class Retry:
    """Retry policy: at most ``max_attempts`` attempts, exponential backoff with jitter."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("Retry.max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("Retry delays must be >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Retry.jitter must be within [0, 1]")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.factor ** max(0, failures - 1))
        return base * (1 - self.jitter * random.random())

    def to_wire(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "initial_delay": self.initial_delay,
            "factor": self.factor,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any] | None) -> Retry:
        return cls(**data) if data else cls()


def _check_name(name: str, what: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '-', '.', ':'"
        )
    return name


class Function:
    """A declared durable task: the user's callable plus how it is triggered and retried."""

    kind = "task"

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        triggers: Sequence[str] = (),
        retry: Retry | None = None,
        input_model: type[Any] | None = None,
    ) -> None:
        self.fn = fn
        self.name = _check_name(name or fn.__name__.replace("_", "-"), "function name")
        self.triggers = [_check_name(t, "event name") for t in triggers]
        self.retry = retry or Retry()
        self.input_model = input_model
        self.is_async = inspect.iscoroutinefunction(fn)
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not params:
            raise TypeError(f"{self.name}: a durable function takes the context first: fn(ctx)")
        self.takes_input = len(params) >= 2

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Function {self.name}>"

    def config(self) -> dict[str, Any]:
        """What the orchestrator learns about this function at registration."""
        return {
            "name": self.name,
            "kind": self.kind,
            "triggers": [{"event": t} for t in self.triggers],
            "retry": self.retry.to_wire(),
        }

    def parse_input(self, raw: Any) -> Any:
        """The input as the function receives it (validated by ``input_model`` if set)."""
        if self.input_model is None:
            return raw
        validate = getattr(self.input_model, "model_validate", None)
        try:
            if validate is not None:
                return validate(raw)
            return self.input_model(**raw) if isinstance(raw, dict) else self.input_model(raw)
        except Exception as exc:  # pydantic.ValidationError or TypeError
            raise InputValidationError(f"input of {self.name!r} is invalid: {exc}") from exc


def task(
    name: str | None = None,
    *,
    triggers: Sequence[str] = (),
    retry: Retry | None = None,
    input_model: type[Any] | None = None,
) -> Callable[[Callable[..., Any]], Function]:
    """Declare a durable task::

        @task("fulfil-order", triggers=["order.created"], retry=Retry(max_attempts=5))
        async def fulfil(ctx, order): ...
    """

    def wrap(fn: Callable[..., Any]) -> Function:
        return Function(fn, name=name, triggers=triggers, retry=retry, input_model=input_model)

    return wrap
