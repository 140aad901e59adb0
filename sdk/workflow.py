"""DAG workflows: tasks declared with their parents, run by the orchestrator as soon as
their parents are done, in parallel where the graph allows::

    etl = Workflow("etl", triggers=["upload.done"])

    @etl.task()
    async def extract(ctx, input): ...

    @etl.task(parents=[extract])
    async def transform(ctx, input):
        rows = ctx.parent(extract)          # the parent's output, by task
        ...

    @etl.task(parents=[transform], skip_if=lambda ctx: not ctx.parent(transform))
    async def load(ctx, input): ...

    @etl.on_failure()
    async def alert(ctx, input):
        ctx.failure                          # {"task", "status", "error"}

Each task is its own call to the app and may itself be durable (steps, sleeps, waits).
See docs/workflows.md for the semantics of failures and skipped tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sdk.flow import Concurrency, concurrency_list
from sdk.function import Body, Retry, Runnable, _check_name, _seconds


class Task:
    """One task of a workflow."""

    def __init__(
        self,
        workflow: Workflow,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        parents: Sequence[Task] = (),
        retry: Retry | None = None,
        timeout: float | timedelta | None = None,
        skip_if: Callable[[Any], bool] | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
    ) -> None:
        self.workflow = workflow
        self.name = _check_name(name or fn.__name__.replace("_", "-"), "task name")
        self.body = Body(fn, f"{workflow.name}.{self.name}")
        for q in parents:
            if not isinstance(q, Task) or q.workflow is not workflow:
                raise ValueError(f"task {self.name!r}: parents must be tasks of the same "
                                 f"workflow, declared before it")
        self.parents = list(parents)
        self.retry = retry
        self.timeout = _seconds(timeout, "timeout")
        self.skip_if = skip_if
        self.concurrency = concurrency_list(concurrency, f"task {workflow.name}.{self.name}")

    def __repr__(self) -> str:
        return f"<Task {self.workflow.name}.{self.name}>"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "parents": [q.name for q in self.parents],
                               "conditional": self.skip_if is not None}
        if self.retry is not None:
            cfg["retry"] = self.retry.to_wire()
        if self.timeout:
            cfg["timeout"] = self.timeout
        if self.concurrency:
            cfg["concurrency"] = [c.to_wire() for c in self.concurrency]
        return cfg


class Workflow(Runnable):
    """A DAG of tasks. Its run's output is ``{task name: output}`` of its completed tasks."""

    kind = "workflow"

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.tasks: dict[str, Task] = {}
        self.failure_task: Task | None = None

    def task(
        self,
        name: str | None = None,
        *,
        parents: Sequence[Task] = (),
        retry: Retry | None = None,
        timeout: float | timedelta | None = None,
        skip_if: Callable[[Any], bool] | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
    ) -> Callable[[Callable[..., Any]], Task]:
        """Declare a task; ``parents`` are tasks declared before it (so no cycles).
        ``concurrency`` limits the task's own calls (across the workflow's runs), as a
        function's does; the workflow's other flow control applies to its runs."""

        def wrap(fn: Callable[..., Any]) -> Task:
            t = Task(self, fn, name=name, parents=parents, retry=retry, timeout=timeout,
                     skip_if=skip_if, concurrency=concurrency)
            if t.name in self.tasks or (self.failure_task and self.failure_task.name == t.name):
                raise ValueError(f"workflow {self.name!r} already has a task {t.name!r}")
            self.tasks[t.name] = t
            return t

        return wrap

    def on_failure(
        self,
        name: str | None = None,
        *,
        retry: Retry | None = None,
        timeout: float | timedelta | None = None,
    ) -> Callable[[Callable[..., Any]], Task]:
        """Declare the task that runs when another task fails (``ctx.failure``)."""

        def wrap(fn: Callable[..., Any]) -> Task:
            t = Task(self, fn, name=name, retry=retry, timeout=timeout)
            if self.failure_task is not None:
                raise ValueError(f"workflow {self.name!r} already has an on_failure task "
                                 f"({self.failure_task.name!r})")
            if t.name in self.tasks:
                raise ValueError(f"workflow {self.name!r} already has a task {t.name!r}")
            self.failure_task = t
            return t

        return wrap

    def find(self, name: str | None) -> Task | None:
        if name is None:
            return None
        if self.failure_task is not None and self.failure_task.name == name:
            return self.failure_task
        return self.tasks.get(name)

    def config(self) -> dict[str, Any]:
        if not self.tasks:
            raise ValueError(f"workflow {self.name!r} has no tasks")
        cfg = super().config()
        cfg["tasks"] = [t.config() for t in self.tasks.values()]
        if self.failure_task is not None:
            cfg["on_failure"] = self.failure_task.config()
        return cfg
