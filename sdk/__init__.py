"""Durable functions over signed HTTP: declare tasks, serve them, trigger them."""

from sdk.asgi import serve
from sdk.client import Client, RunHandle
from sdk.context import Child, Context, SyncContext
from sdk.errors import (
    ChildRunError,
    DurableError,
    InputValidationError,
    NonDeterminismError,
    NonRetriableError,
    OrchestratorError,
    RetryAfterError,
    RunFailedError,
    StepError,
)
from sdk.function import Function, Retry, task

__all__ = [
    "Child",
    "ChildRunError",
    "Client",
    "Context",
    "DurableError",
    "Function",
    "InputValidationError",
    "NonDeterminismError",
    "NonRetriableError",
    "OrchestratorError",
    "Retry",
    "RetryAfterError",
    "RunFailedError",
    "RunHandle",
    "StepError",
    "SyncContext",
    "serve",
    "task",
]
