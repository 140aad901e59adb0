"""Tables. JSON values are stored pre-encoded as text (``*_json`` columns): the engine
already holds them encoded (it measures their size), and text is portable across SQLite
and PostgreSQL. Times are epoch seconds (float)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class App(SQLModel, table=True):
    __tablename__ = "apps"
    id: str = Field(primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    sdk: str = ""
    synced_at: float = 0.0


class FunctionRow(SQLModel, table=True):
    __tablename__ = "functions"
    name: str = Field(primary_key=True)
    app_id: str = Field(index=True)
    kind: str = "task"
    config_json: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: float = 0.0


class Trigger(SQLModel, table=True):
    __tablename__ = "triggers"
    id: int | None = Field(default=None, primary_key=True)
    event: str = Field(index=True)
    function: str = Field(index=True)


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("function", "idempotency_key", name="uq_runs_idempotency"),
        Index("ix_runs_function_id", "function", "id"),
        Index("ix_runs_status_id", "status", "id"),
        Index("ix_runs_parent", "parent_id", "parent_step"),
    )
    id: str = Field(primary_key=True)
    function: str
    status: str = "queued"
    attempt: int = 0
    input_json: str = Field(default="null", sa_column=Column(Text, nullable=False))
    event_json: str | None = Field(default=None, sa_column=Column(Text))
    output_json: str | None = Field(default=None, sa_column=Column(Text))
    error_json: str | None = Field(default=None, sa_column=Column(Text))
    waiting_json: str | None = Field(default=None, sa_column=Column(Text))
    parent_id: str | None = None
    parent_step: str | None = None
    child_index: int = 0
    parent_waits: bool = False
    pending_children: int = 0
    idempotency_key: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None


class Step(SQLModel, table=True):
    """The memo: one row per finished (or retrying) step of a run."""

    __tablename__ = "steps"
    run_id: str = Field(primary_key=True)
    step_id: str = Field(primary_key=True)
    seq: int
    name: str
    kind: str
    status: str = "completed"
    attempts: int = 0
    output_json: str | None = Field(default=None, sa_column=Column(Text))
    error_json: str | None = Field(default=None, sa_column=Column(Text))
    started_at: float | None = None
    ended_at: float | None = None


class QueueItem(SQLModel, table=True):
    """Work due for a run: at most one row per run. A sleep of a day is a row due tomorrow."""

    __tablename__ = "queue"
    run_id: str = Field(primary_key=True)
    due_at: float = Field(index=True)
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    claims: int = 0
    delivery_failures: int = 0
    first_failure_at: float | None = None


class Wait(SQLModel, table=True):
    """A run waiting for an event, indexed by (event name, match key)."""

    __tablename__ = "waits"
    __table_args__ = (Index("ix_waits_event_key", "event", "match_key"),)
    run_id: str = Field(primary_key=True)
    step_id: str
    seq: int
    name: str
    event: str
    match_fields: str = ""
    match_key: str
    match_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    expires_at: float | None = None
    created_at: float = 0.0


class Event(SQLModel, table=True):
    __tablename__ = "events"
    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    data_json: str = Field(sa_column=Column(Text, nullable=False))
    ts: float
    run_ids_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))


apps = App.__table__  # type: ignore[attr-defined]
functions = FunctionRow.__table__  # type: ignore[attr-defined]
triggers = Trigger.__table__  # type: ignore[attr-defined]
runs = Run.__table__  # type: ignore[attr-defined]
steps = Step.__table__  # type: ignore[attr-defined]
queue = QueueItem.__table__  # type: ignore[attr-defined]
waits = Wait.__table__  # type: ignore[attr-defined]
events = Event.__table__  # type: ignore[attr-defined]
metadata = SQLModel.metadata
