"""Tables. JSON values are stored pre-encoded as text (``*_json`` columns): the engine
already holds them encoded (it measures their size), and text is portable across SQLite
and PostgreSQL. Times are epoch seconds (float)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class App(SQLModel, table=True):
    __tablename__ = "apps"
    id: str = Field(primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    sdk: str = ""
    synced_at: float = 0.0
    status: str = Field(default="ok",
                        sa_column=Column(Text, nullable=False, default="ok"))
    """"ok", or "misconfigured": its answers fail verification (no invoke is sent to it
    then; it is probed with signed introspection calls until one verifies)."""
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    probe_at: float | None = None
    probe_failures: int = 0
    signing_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The app's primary signing key, stored as given (HMAC needs it: a secret, never
    shown by GET /apps); None: the orchestrator's own ``DURABLE_SIGNING_KEY``."""
    signing_key_fallback: str | None = Field(default=None,
                                             sa_column=Column(Text, nullable=True))
    """A second key its answers may be signed with, while a rotation is under way."""
    budget_ms: int | None = None
    """The time budget sent in each invoke request; None: ``Settings.budget_ms``."""
    last_contact_at: float | None = None
    """When the app last answered a call or a probe (kept in memory by the invoker, written
    at most every few seconds: not a write per call)."""


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
        Index("ix_runs_created", "created_at"),
        Index("ix_runs_function_ended", "function", "ended_at"),
        Index("ix_runs_function_created", "function", "created_at"),
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
    """The parent's step that spawned it; for a workflow's task run, the task's name."""
    task: str | None = None
    """Set on the runs of a workflow's tasks: the task's name (``function`` is the workflow)."""
    parents_json: str | None = Field(default=None, sa_column=Column(Text))
    """A task run's view of its parents: {task: {status, output}} (and the failure, for
    an on_failure task)."""
    child_index: int = 0
    parent_waits: bool = False
    pending_children: int = 0
    idempotency_key: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    timeout_at: float | None = Field(default=None, index=True)
    """The run must end by then (its function's ``timeout``); cleared when it ends."""
    start_timeout_at: float | None = Field(default=None, index=True)
    """The app must first answer the run by then (``queue_timeout``); cleared when it does."""
    history_json: str | None = Field(default=None, sa_column=Column(Text))
    """Earlier attempts of a replayed run: [{replayed_at, status, error, steps}]."""
    priority: int = Field(default=1, sa_column=Column(Integer, nullable=False, default=1,
                                                      server_default="1"))
    """1 (the default) to 10: its queue row's claim order (``sdk.flow.Priority``)."""
    events_json: str | None = Field(default=None, sa_column=Column(Text))
    """A batch run's events (``sdk.flow.Batch``), as a JSON list; None for other runs."""


class Step(SQLModel, table=True):
    """The memo: one row per finished (or retrying) step of a run."""

    __tablename__ = "steps"
    __table_args__ = (Index("ix_steps_run_seq", "run_id", "seq"),)
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
    deadline_at: float | None = None
    """A sleep's end, a wait's timeout (None: a wait without one, and every other kind)."""


class QueueItem(SQLModel, table=True):
    """Work due for a run: at most one row per run. A sleep of a day is a row due tomorrow."""

    __tablename__ = "queue"
    __table_args__ = (
        # the claim order, one index per claim: rows in no concurrency group (the plain
        # claim) and rows in one (the limited claim, engine/concurrency.py)
        Index("ix_queue_rank_free", "rank_at", sqlite_where=text("ckey1 IS NULL"),
              postgresql_where=text("ckey1 IS NULL")),
        Index("ix_queue_rank_limited", "rank_at", "run_id",
              sqlite_where=text("ckey1 IS NOT NULL"), postgresql_where=text("ckey1 IS NOT NULL")),
        # the slots a group holds are counted over these (partial: rows in no group, the
        # most, cost these indexes nothing)
        Index("ix_queue_ckey1", "ckey1", sqlite_where=text("ckey1 IS NOT NULL"),
              postgresql_where=text("ckey1 IS NOT NULL")),
        Index("ix_queue_ckey2", "ckey2", sqlite_where=text("ckey2 IS NOT NULL"),
              postgresql_where=text("ckey2 IS NOT NULL")),
    )
    run_id: str = Field(primary_key=True)
    due_at: float = Field(index=True)
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    claims: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    """Counts claims; fences answers (``call_id`` is ``<run>:<claims>``)."""
    delivery_failures: int = 0
    first_failure_at: float | None = None
    priority: int = Field(default=1, sa_column=Column(Integer, nullable=False, default=1,
                                                      server_default="1"))
    """The run's priority (1-10): higher is claimed first, aged so none starves."""
    ckey1: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The concurrency group its calls count against, for its function's first limit
    (``<function>[/<task>]#0|<key value>``); None: no limit. A claimed row with a live
    lease holds one slot of its group."""
    ckey2: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The same for the function's second limit."""
    rank_at: float = Field(default=0.0, sa_column=Column(Float, nullable=False, default=0.0,
                                                         server_default="0"))
    """The claim order: ``due_at - (priority - 1) * PRIORITY_STEP_S`` (a priority-p row is
    claimed as if due 60 (p - 1) s sooner), written with every ``due_at``."""


class FlowLease(SQLModel, table=True):
    """A slot of a concurrency group: a grouped queue row the limited claim leased, with
    the claim number it leased it at. Live while that row still holds that lease (same
    ``claims``, not expired); the limited claim deletes the others. Counting these, not
    the group's queued rows, keeps the count's cost to the calls in flight."""

    __tablename__ = "flow_leases"
    run_id: str = Field(primary_key=True)
    claims: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    ckey1: str = Field(sa_column=Column(Text, nullable=False))
    ckey2: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class FlowState(SQLModel, table=True):
    """A throttle's or rate limit's state, per key: GCRA's theoretical arrival time."""

    __tablename__ = "flow_state"
    key: str = Field(primary_key=True)
    """``throttle|<function>|<key value>`` or ``rate_limit|...``."""
    tat: float
    updated_at: float = 0.0


class FlowRun(SQLModel, table=True):
    """The run a key's triggers go to: a debounced run not yet started, an open batch, a
    singleton's active run (``kind``). Stale once that run moved on (read with it)."""

    __tablename__ = "flow_runs"
    kind: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    """``<function>|<key value>``."""
    run_id: str
    opened_at: float = 0.0
    """When its first trigger came (a debounce's ``max_wait``, a batch's timeout)."""
    size: int = 0
    """Triggers gathered (a batch's events)."""


class Wait(SQLModel, table=True):
    """A run waiting for an event (or to be cancelled by one), by (event name, match key)."""

    __tablename__ = "waits"
    __table_args__ = (Index("ix_waits_event_key", "event", "match_key"),
                      Index("ix_waits_event_fields", "event", "match_fields"))
    run_id: str = Field(primary_key=True)
    step_id: str = Field(primary_key=True)
    purpose: str = "wait"
    """"wait": resumes the run with the event; "cancel": cancels the run."""
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
    __table_args__ = (Index("ix_events_ts", "ts"), Index("ix_events_name_ts", "name", "ts"))
    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    data_json: str = Field(sa_column=Column(Text, nullable=False))
    ts: float
    run_ids_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))


class Schedule(SQLModel, table=True):
    """A one-off run at a given time."""

    __tablename__ = "schedules"
    id: str = Field(primary_key=True)
    function: str = Field(index=True)
    input_json: str = Field(default="null", sa_column=Column(Text, nullable=False))
    at: float = Field(index=True)
    run_id: str | None = Field(default=None, index=True)
    """The run it started, once fired (the retention sweep deletes the two together)."""
    created_at: float = 0.0
    priority: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    """Its run's priority (None: the function's declared one)."""


class Cron(SQLModel, table=True):
    """A cron trigger: runs of ``function`` at the fire times of ``expression`` in ``timezone``.

    Each fire starts a run whose idempotency key names the fire time, so a tick fires once
    however many replicas (or restarts) race for it.
    """

    __tablename__ = "crons"
    id: str = Field(primary_key=True)
    function: str = Field(index=True)
    expression: str
    timezone: str = "UTC"
    input_json: str = Field(default="null", sa_column=Column(Text, nullable=False))
    source: str = "api"
    """"api" (created through the API) or "code" (declared with the function)."""
    next_fire_at: float | None = Field(default=None, index=True)
    last_fire_at: float | None = None
    created_at: float = 0.0
    paused: bool = False
    """A paused cron does not fire (its next fire time still moves on, so resuming does
    not fire the ticks it missed)."""


class ApiKey(SQLModel, table=True):
    """A REST API key made through the API: only its SHA-256 is kept (docs/security.md)."""

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True)
    prefix: str
    """The key's first characters (``dk_`` and 8 more), shown in lists to tell keys apart."""
    hash: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    """Hex SHA-256 of the whole key."""
    scopes: str
    """Space-separated scope names (``admin``, ``events``, ``read``)."""
    name: str
    created_at: float = 0.0
    revoked_at: float | None = None
    last_used_at: float | None = None
class WebhookSource(SQLModel, table=True):
    """A third-party webhook source: deliveries to ``/hooks/{id}`` are verified as ``kind``
    signs them and become events by its rules (``engine/webhooks.py``)."""

    __tablename__ = "webhook_sources"
    id: str = Field(primary_key=True)
    kind: str
    """generic | github | stripe | slack | none (unauthenticated)."""
    secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    previous_secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The secret before the last rotation, accepted until ``previous_until``."""
    previous_until: float | None = None
    sig_header: str = "X-Signature"
    sig_algorithm: str = "sha256"
    sig_encoding: str = "hex"
    sig_prefix: str = ""
    tolerance: float = 300.0
    event_from: str
    event_key: str = ""
    event_prefix: str = ""
    id_from: str = "none"
    id_key: str = ""
    created_at: float = 0.0


class Meta(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


apps = App.__table__  # type: ignore[attr-defined]
functions = FunctionRow.__table__  # type: ignore[attr-defined]
triggers = Trigger.__table__  # type: ignore[attr-defined]
runs = Run.__table__  # type: ignore[attr-defined]
steps = Step.__table__  # type: ignore[attr-defined]
queue = QueueItem.__table__  # type: ignore[attr-defined]
waits = Wait.__table__  # type: ignore[attr-defined]
events = Event.__table__  # type: ignore[attr-defined]
schedules = Schedule.__table__  # type: ignore[attr-defined]
crons = Cron.__table__  # type: ignore[attr-defined]
meta = Meta.__table__  # type: ignore[attr-defined]
api_keys = ApiKey.__table__  # type: ignore[attr-defined]
webhook_sources = WebhookSource.__table__  # type: ignore[attr-defined]
flow_state = FlowState.__table__  # type: ignore[attr-defined]
flow_leases = FlowLease.__table__  # type: ignore[attr-defined]
flow_runs = FlowRun.__table__  # type: ignore[attr-defined]

metadata = SQLModel.metadata
