"""The types of the rows the store hands out and of the dicts it takes to insert.

A row read from the store is whatever the connection gave: a SQLAlchemy ``Row``, or the
namedtuple a fast-path plan builds (``fastpath``). Both have read-only attributes named
after the selected columns. The types below are ``Protocol``s of those attributes, one per
shape a repository selects, and the repositories ``cast`` their results to them: the
engine gets a checked type at no cost per row. Per memo row, built then read
(``python -m bench.rows``, docs/benchmarks.md): a SQLModel table instance 50 us, a
pydantic model 3.5-6 us, a frozen dataclass 1.9 us, a NamedTuple 1 us, a slots dataclass
0.45 us, against 0.35 us to read a plan's row as it is; the hot path reads a run's whole
memo on each call.
``tests/unit/test_rows.py`` checks every type against the columns its statements return.

Inserts take TypedDicts of the table's columns (``Required`` where the table has no
default), so mypy checks every dict the engine hands the store.
"""

# no ``from __future__ import annotations``: TypedDict reads ``NotRequired`` at runtime
# (``__required_keys__``), which string annotations hide on Python 3.11
from dataclasses import asdict, dataclass
from typing import Any, NotRequired, Protocol, TypedDict


class Row(Protocol):
    """What every row has besides its columns (SQLAlchemy's ``Row`` and a plan's
    namedtuple alike)."""

    def _asdict(self) -> dict[str, Any]: ...


# -- runs ----------------------------------------------------------------------------------

class RunCore(Row, Protocol):
    """The columns every selection of runs has (children and listing pages included)."""

    @property
    def id(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def error_json(self) -> str | None: ...
    @property
    def waiting_json(self) -> str | None: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def parent_step(self) -> str | None: ...
    @property
    def task(self) -> str | None: ...
    @property
    def child_index(self) -> int: ...
    @property
    def parent_waits(self) -> bool: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def timeout_at(self) -> float | None: ...
    @property
    def history_json(self) -> str | None: ...
    @property
    def priority(self) -> int: ...


class ChildRow(RunCore, Protocol):
    """A child run as its parent reads it (``RunsRepo.children_of``)."""

    @property
    def input_json(self) -> str: ...
    @property
    def event_json(self) -> str | None: ...
    @property
    def output_json(self) -> str | None: ...


class RunSummaryRow(RunCore, Protocol):
    """A run in a listing page, without its input, output and event (``RunsRepo.page``)."""

    @property
    def parents_json(self) -> str | None: ...
    @property
    def pending_children(self) -> int: ...
    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def start_timeout_at(self) -> float | None: ...


class RunRow(ChildRow, RunSummaryRow, Protocol):
    """A whole ``runs`` row."""

    @property
    def events_json(self) -> str | None: ...


@dataclass(slots=True)
class CreatedRun:
    """A ``RunRow`` not read back: the values a run is inserted with, for a run created
    already claimed (``engine.claim.Lease``). Defaults are the table's. Not frozen: on
    Python 3.11 a frozen dataclass of 23 fields took 10x as long to build (its
    ``__init__`` goes through ``object.__setattr__``); ``RunRow`` is what makes it
    read-only to the engine."""

    id: str
    function: str
    input_json: str
    status: str = "queued"
    attempt: int = 0
    event_json: str | None = None
    output_json: str | None = None
    error_json: str | None = None
    waiting_json: str | None = None
    parent_id: str | None = None
    parent_step: str | None = None
    task: str | None = None
    parents_json: str | None = None
    child_index: int = 0
    parent_waits: bool = False
    pending_children: int = 0
    idempotency_key: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    timeout_at: float | None = None
    start_timeout_at: float | None = None
    priority: int = 1
    history_json: str | None = None
    events_json: str | None = None

    def _asdict(self) -> dict[str, Any]:
        return asdict(self)


class RunInsert(TypedDict):
    id: str
    function: str
    input_json: str
    status: NotRequired[str]
    attempt: NotRequired[int]
    event_json: NotRequired[str | None]
    output_json: NotRequired[str | None]
    error_json: NotRequired[str | None]
    waiting_json: NotRequired[str | None]
    parent_id: NotRequired[str | None]
    parent_step: NotRequired[str | None]
    task: NotRequired[str | None]
    parents_json: NotRequired[str | None]
    child_index: NotRequired[int]
    parent_waits: NotRequired[bool]
    pending_children: NotRequired[int]
    idempotency_key: NotRequired[str | None]
    created_at: NotRequired[float]
    started_at: NotRequired[float | None]
    ended_at: NotRequired[float | None]
    timeout_at: NotRequired[float | None]
    start_timeout_at: NotRequired[float | None]
    history_json: NotRequired[str | None]
    priority: NotRequired[int]
    events_json: NotRequired[str | None]


# -- steps, the queue, waits ---------------------------------------------------------------

class StepRow(Row, Protocol):
    """A memo row (``StepsRepo.memo``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def step_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def output_json(self) -> str | None: ...
    @property
    def error_json(self) -> str | None: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def deadline_at(self) -> float | None: ...


class StepInsert(TypedDict):
    run_id: str
    step_id: str
    seq: int
    name: str
    kind: str
    status: NotRequired[str]
    attempts: NotRequired[int]
    output_json: NotRequired[str | None]
    error_json: NotRequired[str | None]
    started_at: NotRequired[float | None]
    ended_at: NotRequired[float | None]
    deadline_at: NotRequired[float | None]


class ClaimedRow(Row, Protocol):
    """A queue row just claimed (``QueueRepo.claim``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def claims(self) -> int: ...
    @property
    def delivery_failures(self) -> int: ...
    @property
    def first_failure_at(self) -> float | None: ...


class QueueInsert(TypedDict):
    run_id: str
    due_at: float
    lease_owner: NotRequired[str | None]
    lease_expires_at: NotRequired[float | None]
    claims: NotRequired[int]
    delivery_failures: NotRequired[int]
    first_failure_at: NotRequired[float | None]
    priority: NotRequired[int]
    rank_at: NotRequired[float]
    ckey1: NotRequired[str | None]
    ckey2: NotRequired[str | None]


@dataclass(frozen=True, slots=True)
class QueueFlow:
    """A queue row's flow control: its priority and concurrency groups (None: none)."""

    priority: int = 1
    ckey1: str | None = None
    ckey2: str | None = None


class TakenWait(Row, Protocol):
    """A wait removed because it expired (``WaitsRepo.take_expired``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def step_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def expires_at(self) -> float | None: ...


class MatchedWait(TakenWait, Protocol):
    """A wait removed because an event satisfied it (``WaitsRepo.take_matching``)."""

    @property
    def purpose(self) -> str: ...


class WaitInsert(TypedDict):
    run_id: str
    step_id: str
    seq: int
    name: str
    event: str
    match_key: str
    match_json: str
    purpose: NotRequired[str]
    match_fields: NotRequired[str]
    expires_at: NotRequired[float | None]
    created_at: NotRequired[float]


# -- events --------------------------------------------------------------------------------

class EventInsert(TypedDict):
    id: str
    name: str
    data_json: str
    ts: float
    run_ids_json: str


class EventRow(Row, Protocol):
    """A whole ``events`` row (``EventsRepo.page`` and ``get``)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def data_json(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def run_ids_json(self) -> str: ...


class EventRunIds(TypedDict):
    """The runs an event started or woke (``EventsRepo.set_run_ids``)."""

    eid: str
    run_ids_json: str


# -- apps and functions --------------------------------------------------------------------

class AppKeys(Row, Protocol):
    """An app's key set: a primary and a fallback (None primary: the orchestrator's
    ``DURABLE_SIGNING_KEY`` and its fallback)."""

    @property
    def signing_key(self) -> str | None: ...
    @property
    def signing_key_fallback(self) -> str | None: ...


class MisconfiguredApp(AppKeys, Protocol):
    """An app whose answers fail verification (``AppsRepo.misconfigured``)."""

    @property
    def id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def probe_at(self) -> float | None: ...
    @property
    def probe_failures(self) -> int: ...


class AppRow(MisconfiguredApp, Protocol):
    """A whole ``apps`` row."""

    @property
    def sdk(self) -> str: ...
    @property
    def synced_at(self) -> float: ...
    @property
    def status(self) -> str: ...
    @property
    def budget_ms(self) -> int | None: ...
    @property
    def last_contact_at(self) -> float | None: ...


class RegisteredFunction(AppKeys, Protocol):
    """A ``functions`` row with its app's URL (``AppsRepo.list_functions``)."""

    @property
    def name(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def config_json(self) -> str: ...
    @property
    def updated_at(self) -> float: ...
    @property
    def url(self) -> str: ...
    @property
    def budget_ms(self) -> int | None: ...


# -- schedules and crons -------------------------------------------------------------------

class ScheduleRow(Row, Protocol):
    """A whole ``schedules`` row."""

    @property
    def id(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def input_json(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def priority(self) -> int | None: ...


class ScheduleInsert(TypedDict):
    id: str
    function: str
    input_json: str
    at: float
    run_id: NotRequired[str | None]
    created_at: NotRequired[float]
    priority: NotRequired[int | None]


class CronRow(Row, Protocol):
    """A whole ``crons`` row."""

    @property
    def id(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def expression(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def input_json(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def next_fire_at(self) -> float | None: ...
    @property
    def last_fire_at(self) -> float | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def paused(self) -> bool: ...


class CronInsert(TypedDict):
    id: str
    function: str
    expression: str
    input_json: str
    timezone: NotRequired[str]
    source: NotRequired[str]
    next_fire_at: NotRequired[float | None]
    last_fire_at: NotRequired[float | None]
    created_at: NotRequired[float]
    paused: NotRequired[bool]


# -- API keys ------------------------------------------------------------------------------

class ApiKeyGrant(Row, Protocol):
    """What a valid key grants (``KeysRepo.grant``)."""

    @property
    def id(self) -> str: ...
    @property
    def scopes(self) -> str: ...


class ApiKeyRow(ApiKeyGrant, Protocol):
    """An ``api_keys`` row without its hash (``KeysRepo.listed``)."""

    @property
    def prefix(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def revoked_at(self) -> float | None: ...
    @property
    def last_used_at(self) -> float | None: ...


class ApiKeyInsert(TypedDict):
    id: str
    prefix: str
    hash: str
    scopes: str
    name: str
    created_at: NotRequired[float]
    revoked_at: NotRequired[float | None]
    last_used_at: NotRequired[float | None]


# -- webhook sources -----------------------------------------------------------------------

class WebhookSourceRow(Row, Protocol):
    """A whole ``webhook_sources`` row."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def secret(self) -> str | None: ...
    @property
    def previous_secret(self) -> str | None: ...
    @property
    def previous_until(self) -> float | None: ...
    @property
    def sig_header(self) -> str: ...
    @property
    def sig_algorithm(self) -> str: ...
    @property
    def sig_encoding(self) -> str: ...
    @property
    def sig_prefix(self) -> str: ...
    @property
    def tolerance(self) -> float: ...
    @property
    def event_from(self) -> str: ...
    @property
    def event_key(self) -> str: ...
    @property
    def event_prefix(self) -> str: ...
    @property
    def id_from(self) -> str: ...
    @property
    def id_key(self) -> str: ...
    @property
    def created_at(self) -> float: ...


class WebhookSourceInsert(TypedDict):
    id: str
    kind: str
    event_from: str
    secret: NotRequired[str | None]
    event_key: NotRequired[str]
    event_prefix: NotRequired[str]
    id_from: NotRequired[str]
    id_key: NotRequired[str]
    created_at: NotRequired[float]
    sig_header: NotRequired[str]
    sig_algorithm: NotRequired[str]
    sig_encoding: NotRequired[str]
    sig_prefix: NotRequired[str]
    tolerance: NotRequired[float]
    previous_secret: NotRequired[str | None]
    previous_until: NotRequired[float | None]
