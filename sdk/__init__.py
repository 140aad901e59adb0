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
    RunSkippedError,
    StepError,
    UsageError,
)
from sdk.flow import Batch, Concurrency, Debounce, Priority, RateLimit, Singleton, Throttle
from sdk.function import CancelOn, Cron, Function, Retry, Runnable, task
from sdk.workflow import Task, Workflow
from sdk.wsgi import serve_wsgi

__all__ = [
    "Batch",
    "CancelOn",
    "Child",
    "ChildRunError",
    "Client",
    "Concurrency",
    "Context",
    "Cron",
    "Debounce",
    "DurableError",
    "Function",
    "InputValidationError",
    "NonDeterminismError",
    "NonRetriableError",
    "OrchestratorError",
    "Priority",
    "RateLimit",
    "Retry",
    "RetryAfterError",
    "RunFailedError",
    "RunHandle",
    "RunSkippedError",
    "Runnable",
    "Singleton",
    "StepError",
    "SyncContext",
    "Task",
    "Throttle",
    "UsageError",
    "Workflow",
    "serve",
    "serve_wsgi",
    "task",
]
