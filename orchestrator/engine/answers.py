"""The REST API's response bodies, as TypedDicts: the views (``views.py``) and the facade
(``engine.py``) are typed to return them, so mypy checks what they build; they stay plain
dicts (no model is built on the hot path). The OpenAPI document shows their schemas
(``orchestrator/api/openapi.py``) and ``tests/e2e/test_contract.py`` validates every
route's real answers against them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from pydantic import WithJsonSchema as Schema
from typing_extensions import TypedDict

from sdk import protocol as p

Time = Annotated[str, Schema({"type": "string", "format": "date-time",
                              "description": "ISO-8601, UTC ('...Z')"})]
OptionalTime = Annotated[str | None, Schema({
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
    "description": "ISO-8601, UTC ('...Z'), or null"})]
From = Literal["failed_step", "start"]
ErrorCode = Literal["bad_request", "validation_error", "not_found", "conflict",
                    "unauthorized", "too_large", "method_not_allowed", "http_error",
                    "internal_error", "database_unavailable", "storage_full",
                    "forbidden"]
JsonObject = dict[str, Any]


class ErrorDetail(TypedDict):
    code: ErrorCode
    message: str
    field: NotRequired[Annotated[str, Field(description="The field at fault, if one is")]]
    request_id: NotRequired[Annotated[str, Field(
        description="A 500's request id (as in the x-request-id header): the log has the "
        "details under it")]]


class Error(TypedDict):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail


class Alive(TypedDict):
    status: Literal["ok"]


class Ready(TypedDict):
    status: Literal["ready"]


class NotReady(TypedDict):
    status: Literal["not ready"]
    problems: Annotated[dict[str, str], Field(description="component -> why")]


class Retry(TypedDict, total=False):
    max_attempts: int
    initial_delay: float
    factor: float
    max_delay: float
    jitter: float


class ConcurrencyConfig(TypedDict):
    limit: int
    key: NotRequired[Annotated[str, Field(
        description="A dotted path into the run ('input.x', 'event.data.x'): the limit "
                    "holds per value (absent: across all the function's runs)")]]


class RateConfig(TypedDict):
    """A throttle (excess queued) or a rate limit (excess skipped): GCRA."""

    limit: int
    period: float
    burst: NotRequired[int]
    key: NotRequired[str]


class DebounceConfig(TypedDict):
    period: float
    key: NotRequired[str]
    max_wait: NotRequired[float]


class BatchConfig(TypedDict):
    max_size: int
    timeout: float
    key: NotRequired[str]


class SingletonConfig(TypedDict):
    mode: Literal["skip", "cancel"]
    key: NotRequired[str]


class PriorityConfig(TypedDict):
    default: Annotated[int, Field(ge=1, le=10)]
    key: NotRequired[str]


class TaskConfig(TypedDict):
    name: str
    parents: NotRequired[list[str]]
    conditional: NotRequired[bool]
    retry: NotRequired[Retry]
    timeout: NotRequired[float]
    concurrency: NotRequired[list[ConcurrencyConfig]]


class Trigger(TypedDict):
    event: str


class CronConfig(TypedDict):
    expression: str
    timezone: NotRequired[str]
    input: NotRequired[Any]


class CancelOn(TypedDict):
    event: str
    match: NotRequired[Annotated[dict[str, str], Field(
        description="event path -> run path ('input.x' or 'event.data.x')")]]


class FunctionConfig(TypedDict):
    """A function's configuration, as its app declared it."""

    name: str
    kind: NotRequired[Literal["task", "workflow"]]
    triggers: NotRequired[list[Trigger]]
    retry: NotRequired[Retry]
    timeout: NotRequired[float]
    queue_timeout: NotRequired[float]
    crons: NotRequired[list[CronConfig]]
    cancel_on: NotRequired[list[CancelOn]]
    retention: NotRequired[Annotated[float, Field(
        description="Seconds its ended runs are kept before they are deleted (absent: "
        "the orchestrator's retention_days)")]]
    tasks: NotRequired[list[TaskConfig]]
    on_failure: NotRequired[TaskConfig]
    concurrency: NotRequired[list[ConcurrencyConfig]]
    throttle: NotRequired[RateConfig]
    rate_limit: NotRequired[RateConfig]
    debounce: NotRequired[DebounceConfig]
    batch: NotRequired[BatchConfig]
    singleton: NotRequired[SingletonConfig]
    priority: NotRequired[PriorityConfig]


class Function(FunctionConfig):
    app_id: str
    url: str


class RegisteredApp(TypedDict):
    id: str
    url: str
    sdk: str | None
    synced_at: Time
    functions: list[FunctionConfig]
    signing_key: NotRequired[Annotated[str, Field(
        description="Only with generate_key: the app's new key, shown this once. Deploy "
                    "the app with it as DURABLE_SIGNING_KEY (its old key as "
                    "DURABLE_SIGNING_KEY_FALLBACK), then rotate it in: POST "
                    "/api/v1/apps/{id}/keys with {\"key\": it}")]]


AppStatus = Literal["ok", "misconfigured"]


class App(TypedDict):
    id: str
    url: str
    sdk: str | None
    synced_at: Time
    functions: list[str]
    status: AppStatus
    error: str | None
    budget_ms: Annotated[int | None, Field(
        description="The time budget sent to it per call (null: the orchestrator's default)")]
    own_key: Annotated[bool, Field(
        description="It has its own signing key (false: the orchestrator's "
        "DURABLE_SIGNING_KEY); keys are never shown")]
    fallback_key: Annotated[bool, Field(
        description="A fallback key is accepted too (a rotation is under way)")]
    last_contact_at: Annotated[float | None, Field(
        description="When the app last answered a call or a probe (epoch seconds; "
        "recorded every 30 s at most; null: not yet)")]


class AppList(TypedDict):
    apps: list[App]


class AppKey(TypedDict):
    """An app's new primary signing key, shown this once."""

    id: str
    signing_key: Annotated[str, Field(
        description="Sign with it from now on; the previous primary is the fallback")]


class FunctionList(TypedDict):
    functions: list[Function]


class EventsAccepted(TypedDict):
    ids: Annotated[list[str], Field(description="The events' ids, in order")]
    runs: Annotated[list[list[str]], Field(
        description="Per event, the runs it started (for a duplicate: the runs its first "
        "delivery started)")]
    duplicate: Annotated[list[bool], Field(
        description="Per event, whether its id was known (sent before, or earlier in the "
        "list): accepted and ignored, it started and resumed nothing")]


class Waiting(TypedDict, total=False):
    """What a queued or running run waits for; the fields depend on kind."""

    kind: Literal["sleep", "event", "children", "retry", "resume", "delivery_retry",
                  "app_misconfigured", "on_failure"]
    step: str
    until: OptionalTime
    at: OptionalTime
    timeout_at: OptionalTime
    event: str
    match: JsonObject
    pending: int
    total: int
    attempt: int
    error: JsonObject
    reason: str
    failures: int
    task: str
    failed_task: str


class RunSummary(TypedDict):
    id: str
    function: str
    status: p.RunStatus
    attempt: Annotated[int, Field(description="Run-level attempt, 0 on the first")]
    parent_id: str | None
    task: Annotated[str | None, Field(description="The workflow task this run is")]
    waiting: Annotated[Waiting | None, Field(description="Only while queued or running")]
    error: JsonObject | None
    created_at: Time
    started_at: OptionalTime
    ended_at: OptionalTime


class StoredEvent(TypedDict):
    id: str
    name: str
    data: JsonObject
    ts: float


class Step(TypedDict):
    id: str
    name: str
    kind: p.MemoKind
    status: p.StepStatus
    attempts: int
    output: Any
    error: JsonObject | None
    started_at: OptionalTime
    ended_at: OptionalTime
    deadline_at: Annotated[OptionalTime, Field(
        description="A sleep's end, a wait's timeout (null for other steps)")]


class Child(TypedDict):
    id: str
    function: str
    status: p.RunStatus
    step: Annotated[str | None, Field(description="The step (or task) that started it")]
    task: str | None


class ParentState(TypedDict, total=False):
    status: p.RunStatus
    output: Any
    error: JsonObject


class ReplayedStep(TypedDict, total=False):
    id: str
    kind: str
    status: str
    attempts: int
    error: JsonObject | None


HistoryEntry = TypedDict("HistoryEntry", {
    "replayed_at": Time, "from": From, "status": p.RunStatus, "attempt": int,
    "error": JsonObject | None, "started_at": OptionalTime, "ended_at": OptionalTime,
    "steps": list[ReplayedStep],
}, total=False)


class Task(TypedDict):
    name: str
    id: str | None
    status: p.RunStatus | Literal["not started"]  # views.NOT_STARTED


class Run(RunSummary):
    """A run with its input, output, steps, children, task, parents and history (the
    answer of GET /runs/{id}, GET /runs/{id}/wait and POST /runs?wait=)."""

    input: Any
    event: StoredEvent | None
    output: Any
    idempotency_key: str | None
    priority: Annotated[int, Field(description="1-10: claimed before lower priorities of "
                                   "its function, aged (docs/flow-control.md)")]
    steps: list[Step]
    children: list[Child]
    tasks: NotRequired[Annotated[list[Task], Field(
        description="A workflow run's declared tasks (its on_failure task last), each with "
        "its run's id and status, or `not started`")]]
    failure: Annotated[JsonObject | None, Field(
        description="An on_failure task run's failure: {task, status, error?}")]
    parents: Annotated[dict[str, ParentState] | None, Field(
        description="A task run's parents when it started")]
    history: list[HistoryEntry]


class RunList(TypedDict):
    runs: list[RunSummary]
    next_cursor: Annotated[str | None, Field(description="null on the last page")]


class RunCounts(TypedDict):
    """Runs per status (0 for a status no run has), and all of them, for a function and
    a time range (``GET /runs/counts``)."""

    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int
    skipped: int
    total: int


class RunId(TypedDict):
    id: str


class RunIds(TypedDict):
    ids: Annotated[list[str], Field(description="In the order given")]


class CancelledRun(TypedDict):
    id: str
    cancelled: Annotated[list[str], Field(description="The run and the descendants ended")]


class CancelledRuns(TypedDict):
    cancelled: list[str]


ReplayedRun = TypedDict("ReplayedRun", {"id": str, "status": Literal["replayed"],
                                        "from": From})


class ReplayedRuns(TypedDict):
    replayed: list[str]


class Schedule(TypedDict):
    id: str
    function: str
    at: OptionalTime
    input: Any
    run_id: Annotated[str | None, Field(description="The run it started, once it fired")]
    created_at: Time
    priority: Annotated[int | None, Field(
        description="Its run's priority (null: the function's declared priority)")]


class ScheduleList(TypedDict):
    schedules: list[Schedule]


class Cron(TypedDict):
    id: str
    function: str
    expression: str
    timezone: str
    input: Any
    source: Annotated[Literal["api", "code"], Field(
        description="code: declared with the function (deleted by re-syncing)")]
    next_fire_at: OptionalTime
    last_fire_at: OptionalTime
    created_at: Time
    paused: Annotated[bool, Field(
        description="A paused cron does not fire; its next fire time moves on, so "
        "resuming it fires none of the ticks it missed")]


class CronList(TypedDict):
    crons: list[Cron]


# -- events and functions, for the catalog pages ------------------------------------------

class EventSummary(TypedDict):
    id: str
    name: str
    ts: Annotated[float, Field(description="When it happened (epoch seconds)")]
    runs: Annotated[list[str], Field(description="The runs it started")]


class EventList(TypedDict):
    events: Annotated[list[EventSummary], Field(description="Newest first")]
    next_cursor: Annotated[str | None, Field(description="null on the last page")]


class EventRun(TypedDict):
    id: str
    function: str
    status: p.RunStatus


class EventDetail(TypedDict):
    id: str
    name: str
    data: JsonObject
    ts: Annotated[float, Field(description="When it happened (epoch seconds)")]
    runs: Annotated[list[EventRun], Field(
        description="The runs it started (a run deleted since is left out)")]


class FunctionDetail(Function):
    """A function's configuration with its app and its crons as they stand."""

    app: App
    cron_triggers: Annotated[list[Cron], Field(
        description="Its crons (declared in code or made through the API), with their "
        "next fire time and paused state")]


# -- API keys ------------------------------------------------------------------------------

Scope = Literal["admin", "events", "read"]
"""What an API key may do: ``admin`` everything, ``events`` send events only, ``read``
read runs, functions, events, schedules and crons (docs/security.md)."""


class ApiKey(TypedDict):
    id: str
    prefix: Annotated[str, Field(description="The key's first characters (never the key)")]
    name: str
    scopes: list[Scope]
    created_at: Time
    last_used_at: Annotated[OptionalTime, Field(
        description="About when it was last used (recorded at most once a minute)")]
    revoked_at: OptionalTime


class ApiKeyList(TypedDict):
    keys: list[ApiKey]


class CreatedApiKey(ApiKey):
    key: Annotated[str, Field(description="The key itself: shown this once, never again")]
WebhookKind = Literal["generic", "github", "stripe", "slack", "none"]
HashAlgorithm = Literal["sha1", "sha256", "sha512"]
DigestEncoding = Literal["hex", "base64"]


class WebhookRule(TypedDict):
    source: Annotated[Literal["header", "field", "constant", "none"], Field(
        description="A header, a dotted body field, a constant (none: no delivery id)")]
    key: Annotated[str, Field(description="The header's name, the field's path, or the "
                                          "constant")]
    prefix: str


class WebhookSignature(TypedDict):
    header: str
    algorithm: HashAlgorithm
    encoding: DigestEncoding
    prefix: str


class WebhookSource(TypedDict):
    id: str
    kind: WebhookKind
    path: Annotated[str, Field(description="Where the provider delivers: POST "
                                           "/hooks/{id} (no API key)")]
    event: WebhookRule
    delivery_id: WebhookRule
    signature: Annotated[WebhookSignature | None, Field(
        description="A generic source's HMAC (null for other kinds)")]
    tolerance: Annotated[float, Field(description="Stripe and Slack: the timestamp's "
                                                  "tolerance (seconds)")]
    previous_secret_until: Annotated[str | None, Field(
        description="The previous secret is accepted until then (null: none is)")]
    created_at: Time


class WebhookSourceWithSecret(WebhookSource):
    secret: Annotated[str | None, Field(description="Shown once: give it to the provider "
                                                    "(null for kind none)")]
    warning: NotRequired[str]


class WebhookSourceList(TypedDict):
    webhooks: list[WebhookSource]


class WebhookDelivered(TypedDict):
    id: Annotated[str, Field(description="The event's id: <source id>:<delivery id>")]
    duplicate: Annotated[bool, Field(description="A redelivery: accepted, ignored")]
