"""The REST API's route table: per operation its path, method, summary, request model,
response type per status code and query/path parameters. ``openapi.py`` builds the
document from it; ``tests/unit/test_openapi.py`` checks it names every route the app
serves, and ``tests/e2e/test_contract.py`` that the real answers match it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from orchestrator.api import bodies as b
from orchestrator.api.fields import MAX_ID_CHARS, MAX_STR_CHARS, NO_NUL, TIMESTAMP_SCHEMA
from orchestrator.engine import answers as a
from orchestrator.engine.engine import MAX_BULK
from orchestrator.engine.keys import CACHE_SECONDS
from orchestrator.engine.webhooks import MAX_DELIVERY_BYTES

REF: Final = "#/components/schemas/{model}"

#: The page size of ``GET /runs``, and its largest.
DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 500
#: The longest ``?wait=`` and ``?timeout=`` (seconds), and the wait's default.
MAX_WAIT: Final = 60.0
DEFAULT_WAIT: Final = 25.0
#: The most pending schedules ``GET /schedules`` lists.
MAX_SCHEDULES: Final = 1000
#: The longest ``cursor`` of ``GET /events`` (an event id of at most ``MAX_ID_CHARS``,
#: and its time, base64-encoded).
MAX_CURSOR_CHARS: Final = 4 * MAX_ID_CHARS + 64


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


@dataclass(frozen=True)
class Raw:
    """A schema written here (a choice of types), with the types its ``$ref``s name."""

    schema: dict[str, Any]
    uses: tuple[type, ...] = ()


Schema = type | Raw


def one_of(*types: type, key: str = "oneOf") -> Raw:
    return Raw({key: [ref(t.__name__) for t in types]}, types)


@dataclass(frozen=True)
class Answer:
    schema: Schema | None
    description: str = "OK"
    links: tuple[str, ...] = ()  # operations whose ``link_param`` is this answer's id
    link_param: str = ""
    media: str = "application/json"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Operation:
    path: str
    method: Literal["get", "post", "patch", "delete"]
    operation_id: str
    tag: str
    summary: str
    responses: dict[int, Answer]
    body: Schema | None = None
    body_required: bool = True
    params: tuple[Param, ...] = ()
    #: Error statuses besides those every operation of its kind has (401 and 403 unless
    #: public;
    #: 413 and 422 with a body); ``error_text`` says when, where ``ERROR_TEXT`` would not.
    errors: tuple[int, ...] = ()
    error_text: dict[int, str] = field(default_factory=dict)
    description: str = ""
    public: bool = False  # no API key needed
    #: The scope an API key needs (besides ``admin``, which may do everything); unset,
    #: ``default_scope`` says.
    scope: a.Scope | None = None

    @property
    def needs(self) -> a.Scope | None:
        """The scope this operation needs; None for a public one."""
        return None if self.public else self.scope or default_scope(self.method)


def default_scope(method: str) -> a.Scope:
    """The rule for a route that names no scope: reading needs ``read``, the rest
    ``admin``."""
    return "read" if method == "get" else "admin"


ERROR_TEXT: Final = {
    400: "Bad request (a `cursor` this API did not give)",
    401: "Missing or invalid API key (`Authorization: Bearer <key>`)",
    403: "The API key lacks the scope this operation needs",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large (`max_body_bytes`, 4 MiB by default)",
    422: "Invalid input; `error.field` names the field",
}
BAD_FUNCTION: Final = "No function by that name is registered"


def path_id(name: str, what: str) -> Param:
    return Param(name, "path", {"type": "string"},
                 f"{what} (at most {MAX_ID_CHARS} characters; an id that cannot exist, such "
                 "as one holding NUL, is 404)")


def seconds(name: str, description: str, default: float | None = None) -> Param:
    schema: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": MAX_WAIT}
    if default is not None:
        schema["default"] = default
    return Param(name, "query", schema, description)


RUN_ID: Final = path_id("run_id", "A run id")
APP_ID: Final = path_id("app_id", "An app id")
FUNCTION_Q: Final = Param("function", "query", {"type": "string", "minLength": 1,
                                                "maxLength": MAX_STR_CHARS,
                                                "pattern": NO_NUL},
                          "Only those of this function")
SINCE_Q: Final = Param("since", "query", TIMESTAMP_SCHEMA,
                       "Only runs created at or after this time (epoch seconds or ISO-8601 "
                       "with a time zone)")
UNTIL_Q: Final = Param("until", "query", TIMESTAMP_SCHEMA,
                       "Only runs created before this time (epoch seconds or ISO-8601 with "
                       "a time zone)")
EVENTS: Final = Raw({"oneOf": [ref("Event"), {"type": "array", "items": ref("Event"),
                                              "minItems": 1,
                                              "maxItems": b.MAX_EVENTS_PER_REQUEST}]},
                    (b.Event,))
SOURCE_ID: Final = path_id("source_id", "A webhook source id")
RUN_LINKS: Final = ("getRun", "waitRun", "cancelRun", "replayRun")

OPERATIONS: Final = (
    # -- service --------------------------------------------------------------------------
    Operation("/healthz", "get", "healthz", "service", "Liveness",
              {200: Answer(a.Alive)}, public=True),
    Operation("/readyz", "get", "readyz", "service",
              "Readiness: the engine started and its database answers",
              {200: Answer(a.Ready, "Ready"), 503: Answer(a.NotReady, "Not ready")},
              public=True),
    Operation("/metrics", "get", "metrics", "service",
              "Prometheus metrics (text format 0.0.4)",
              {200: Answer(Raw({"type": "string"}), media="text/plain")}, scope="read",
              description="Runs, steps, call latency, invoker errors, queue depth and lag "
                          "(docs/observability.md). With `metrics_public` no key is "
                          "needed."),
    Operation("/api/v1/openapi.json", "get", "openapi", "service",
              "This document (no API key needed)",
              {200: Answer(Raw({"type": "object"}))}, public=True),
    # -- apps and functions ---------------------------------------------------------------
    Operation("/api/v1/apps", "post", "registerApp", "apps",
              "Register or re-sync an app by URL (the orchestrator introspects it)",
              {200: Answer(a.RegisteredApp)}, body=b.RegisterApp, errors=(409,),
              error_text={409: "A function name is already registered by another app",
                          422: "Invalid URL, app unreachable, bad signature or invalid "
                               "declarations (field 'url' or 'functions')"}),
    Operation("/api/v1/apps", "get", "listApps", "apps", "List apps",
              {200: Answer(a.AppList)}),
    Operation("/api/v1/apps/{app_id}", "patch", "updateApp", "apps",
              "Set an app's time budget per call",
              {200: Answer(a.App)}, body=b.UpdateApp, params=(APP_ID,), errors=(404,),
              error_text={422: "Invalid input, or 'budget_ms' not below the call timeout"}),
    Operation("/api/v1/apps/{app_id}/keys", "post", "rotateAppKey", "apps",
              "Rotate an app's signing key: a new primary (given or generated), the old "
              "one kept as fallback",
              {201: Answer(a.AppKey, "Rotated: the new key, shown this once")},
              body=b.RotateKey, body_required=False, params=(APP_ID,), errors=(404,),
              error_text={409: "That key is the app's primary already"},
              description="Requests to the app are signed with the new key at once; its "
                          "answers verify with either key. Give the app the new key as "
                          "its fallback first (docs/protocol.md, key rotation)."),
    Operation("/api/v1/apps/{app_id}/keys/fallback", "delete", "dropAppFallbackKey", "apps",
              "Stop accepting an app's fallback signing key",
              {204: Answer(None, "Dropped")}, params=(APP_ID,), errors=(404,)),
    Operation("/api/v1/functions", "get", "listFunctions", "apps", "List functions",
              {200: Answer(a.FunctionList)}),
    Operation("/api/v1/functions/{name}", "get", "getFunction", "apps",
              "A function: its app, triggers, crons (with their next fire time), retry "
              "policy, timeouts and, for a workflow, its tasks",
              {200: Answer(a.FunctionDetail)},
              params=(path_id("name", "A function's name"),), errors=(404,)),
    # -- events ---------------------------------------------------------------------------
    Operation("/api/v1/events", "post", "sendEvents", "events",
              f"Send one event or a list of up to {b.MAX_EVENTS_PER_REQUEST} events",
              {202: Answer(a.EventsAccepted, "Accepted")}, body=EVENTS, scope="events",
              description="Stores the events, starts the runs they trigger, resumes the "
                          "runs waiting for them and cancels the runs they cancel."),
    Operation("/api/v1/events", "get", "listEvents", "events",
              "Stored events, newest first, each with the runs it started",
              {200: Answer(a.EventList)}, errors=(400, 422), params=(
                  Param("name", "query", {"type": "string", "minLength": 1,
                                          "maxLength": MAX_STR_CHARS, "pattern": NO_NUL},
                        "Only events of this name"),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                        "Page size"),
                  Param("cursor", "query", {"type": "string",
                                            "maxLength": MAX_CURSOR_CHARS},
                        "next_cursor of the previous page (anything else is 400)"))),
    Operation("/api/v1/events/{event_id}", "get", "getEvent", "events",
              "An event: its data and the runs it started (function and status)",
              {200: Answer(a.EventDetail)},
              params=(path_id("event_id", "An event id"),), errors=(404,)),
    # -- runs -----------------------------------------------------------------------------
    Operation("/api/v1/runs", "post", "startRun", "runs", "Start a run",
              {201: Answer(one_of(a.RunId, a.Run, key="anyOf"),
                           "Started (or found by its idempotency key): its id, or with "
                           "?wait= the run", RUN_LINKS, "run_id")},
              body=b.CreateRun, errors=(404,), error_text={404: BAD_FUNCTION},
              params=(seconds("wait", "Also wait up to this many seconds for the run to "
                              "end, and answer with the run (as GET /runs/{run_id}/wait "
                              "does) instead of its id"),)),
    Operation("/api/v1/runs", "get", "listRuns", "runs", "List runs, newest first",
              {200: Answer(a.RunList)}, errors=(400, 404, 422), params=(
                  FUNCTION_Q,
                  Param("status", "query", {"enum": list(b.STATUSES)},
                        "Only runs with this status"),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                        "Page size"),
                  Param("cursor", "query", {"type": "string"},
                        "next_cursor of the previous page (anything else is 400)"),
                  SINCE_Q, UNTIL_Q,
                  Param("event_id", "query", {"type": "string", "maxLength": MAX_ID_CHARS,
                                              "pattern": NO_NUL},
                        "Only the runs the event with this id started")),
              error_text={404: "No event with that `event_id`"}),
    Operation("/api/v1/runs/counts", "get", "countRuns", "runs",
              "Runs per status, and in all, of a function (or every one) in a time range",
              {200: Answer(a.RunCounts)}, errors=(422,),
              params=(FUNCTION_Q, SINCE_Q, UNTIL_Q),
              description="Every status is named (0 if no run has it); `total` counts "
                          "them all. The time range is on the runs' creation time, as "
                          "for GET /runs."),
    Operation("/api/v1/runs/bulk", "post", "startRuns", "runs",
              f"Start up to {MAX_BULK} runs in one transaction (all or none)",
              {201: Answer(a.RunIds, "Started")}, body=one_of(b.BulkInputs, b.BulkRunList),
              errors=(404,), error_text={404: BAD_FUNCTION}),
    Operation("/api/v1/runs/cancel", "post", "cancelRuns", "control",
              "Cancel the runs a filter selects (and their descendants)",
              {200: Answer(a.CancelledRuns)}, body=b.CancelRuns),
    Operation("/api/v1/runs/replay", "post", "replayRuns", "control",
              "Replay the failed, cancelled or timed-out runs a filter selects",
              {200: Answer(a.ReplayedRuns)}, body=b.ReplayRuns),
    Operation("/api/v1/runs/{run_id}", "get", "getRun", "runs",
              "A run with its input, output, steps, children, task, parents, history",
              {200: Answer(a.Run)}, params=(RUN_ID,), errors=(404,)),
    Operation("/api/v1/runs/{run_id}/wait", "get", "waitRun", "runs",
              "Long-poll until the run ends, or timeout seconds pass",
              {200: Answer(a.Run)}, errors=(404, 422),
              params=(RUN_ID, seconds("timeout", "Seconds to wait at most", DEFAULT_WAIT)),
              description="Answers with the run as it is then: check its status."),
    Operation("/api/v1/runs/{run_id}/cancel", "post", "cancelRun", "control",
              "Cancel a run and its unfinished descendants",
              {200: Answer(a.CancelledRun)}, body=b.CancelRun, body_required=False,
              params=(RUN_ID,), errors=(404,), error_text={409: "The run already ended"}),
    Operation("/api/v1/runs/{run_id}/replay", "post", "replayRun", "control",
              "Run a failed, cancelled or timed-out run again",
              {200: Answer(a.ReplayedRun)}, body=b.ReplayRun, body_required=False,
              params=(RUN_ID,), errors=(404,),
              error_text={409: "The run is not failed, cancelled or timed out, or it is a "
                               "workflow's task (replay the workflow)"},
              description="From its failed step (what succeeded is kept) or from the start "
                          "(optionally with a new input). The earlier attempt goes to the "
                          "run's history. A workflow replays its failed tasks (or all of "
                          "them)."),
    # -- schedules ------------------------------------------------------------------------
    Operation("/api/v1/schedules", "post", "createSchedule", "schedules",
              "Start one run at a given time",
              {201: Answer(a.Schedule, "Created", ("getSchedule", "deleteSchedule"), "sid")},
              body=b.CreateSchedule, errors=(404,),
              error_text={404: BAD_FUNCTION, 422: "Invalid input, or 'at' is in the past"}),
    Operation("/api/v1/schedules", "get", "listSchedules", "schedules",
              f"Pending schedules (not fired yet), soonest first, at most {MAX_SCHEDULES}",
              {200: Answer(a.ScheduleList)}, params=(FUNCTION_Q,), errors=(422,)),
    Operation("/api/v1/schedules/{sid}", "get", "getSchedule", "schedules",
              "A schedule (run_id is set once it fired)",
              {200: Answer(a.Schedule)}, params=(path_id("sid", "A schedule id"),),
              errors=(404,)),
    Operation("/api/v1/schedules/{sid}", "delete", "deleteSchedule", "schedules",
              "Delete a schedule that has not fired",
              {204: Answer(None, "Deleted")}, params=(path_id("sid", "A schedule id"),),
              errors=(404,), error_text={409: "The schedule already fired"}),
    # -- crons ----------------------------------------------------------------------------
    Operation("/api/v1/crons", "post", "createCron", "crons", "Create a cron trigger",
              {201: Answer(a.Cron, "Created", ("deleteCron",), "cid")},
              body=b.CreateCron, errors=(404,),
              error_text={404: BAD_FUNCTION, 422: "Invalid input, expression or time zone"}),
    Operation("/api/v1/crons", "get", "listCrons", "crons",
              "Cron triggers, declared in code or created through the API",
              {200: Answer(a.CronList)}, params=(FUNCTION_Q,), errors=(422,)),
    Operation("/api/v1/crons/{cid}", "delete", "deleteCron", "crons",
              "Delete a cron trigger created through the API",
              {204: Answer(None, "Deleted")}, params=(path_id("cid", "A cron id"),),
              errors=(404,),
              error_text={409: "The cron is declared in code (remove it there and re-sync "
                               "the app)"}),
    Operation("/api/v1/crons/{cid}", "get", "getCron", "crons",
              "A cron trigger (its next fire time, whether it is paused)",
              {200: Answer(a.Cron)}, params=(path_id("cid", "A cron id"),), errors=(404,)),
    Operation("/api/v1/crons/{cid}/pause", "post", "pauseCron", "crons",
              "Pause a cron trigger (one declared in code too: re-syncing keeps it paused)",
              {200: Answer(a.Cron, "Paused")}, params=(path_id("cid", "A cron id"),),
              errors=(404,),
              description="A paused cron starts no run; its next fire time still moves "
                          "on with each tick, so resuming fires none of the ticks missed."),
    Operation("/api/v1/crons/{cid}/resume", "post", "resumeCron", "crons",
              "Resume a paused cron trigger from its next tick after now",
              {200: Answer(a.Cron, "Resumed")}, params=(path_id("cid", "A cron id"),),
              errors=(404,)),
    # -- API keys -------------------------------------------------------------------------
    Operation("/api/v1/keys", "post", "createKey", "keys",
              "Create an API key with the given scopes",
              {201: Answer(a.CreatedApiKey, "Created: the key is in this answer only",
                           ("revokeKey",), "key_id")}, body=b.CreateKey),
    Operation("/api/v1/keys", "get", "listKeys", "keys",
              "API keys made through the API, revoked ones too (never the key itself)",
              {200: Answer(a.ApiKeyList)}, scope="admin"),
    Operation("/api/v1/keys/{key_id}", "delete", "revokeKey", "keys",
              "Revoke an API key: refused from then on (by every replica within "
              f"{CACHE_SECONDS:g} seconds)",
              {204: Answer(None, "Revoked")}, params=(path_id("key_id", "An API key's id"),),
              errors=(404,)),
    # -- webhooks -------------------------------------------------------------------------
    Operation("/api/v1/webhooks", "post", "createWebhook", "webhooks",
              "Create a webhook source (its answer shows the secret, once)",
              {201: Answer(a.WebhookSourceWithSecret, "Created",
                           ("getWebhook", "deleteWebhook", "rotateWebhookSecret",
                            "deliverWebhook"), "source_id")},
              body=b.CreateWebhook,
              description="Deliveries to POST /hooks/{id} are verified as the kind's "
                          "provider signs them (kind none: not at all, with a warning) and "
                          "become events by the source's rules."),
    Operation("/api/v1/webhooks", "get", "listWebhooks", "webhooks",
              "Webhook sources (without their secrets)", {200: Answer(a.WebhookSourceList)}),
    Operation("/api/v1/webhooks/{source_id}", "get", "getWebhook", "webhooks",
              "A webhook source (without its secret)", {200: Answer(a.WebhookSource)},
              params=(SOURCE_ID,), errors=(404,)),
    Operation("/api/v1/webhooks/{source_id}", "delete", "deleteWebhook", "webhooks",
              "Delete a webhook source (its deliveries are 404 from then on)",
              {204: Answer(None, "Deleted")}, params=(SOURCE_ID,), errors=(404,)),
    Operation("/api/v1/webhooks/{source_id}/secret", "post", "rotateWebhookSecret",
              "webhooks", "Rotate a source's secret (the answer shows the new one, once)",
              {200: Answer(a.WebhookSourceWithSecret)}, body=b.RotateWebhookSecret,
              body_required=False, params=(SOURCE_ID,), errors=(404,),
              error_text={422: "Invalid input, or the source is unauthenticated (kind "
                               "none)"},
              description="The old secret is still accepted for grace_seconds (24 h by "
                          "default; 0: not at all); a later rotation drops it."),
    Operation("/hooks/{source_id}", "post", "deliverWebhook", "webhooks",
              "A provider's delivery (no API key: its signature authenticates it)",
              {200: Answer(a.WebhookDelivered, "Stored as an event (a redelivery: "
                                               "duplicate, ignored)")},
              params=(SOURCE_ID,), errors=(400, 401, 404, 413), public=True,
              error_text={400: "Malformed body (JSON or form-encoded), or the event name "
                               "or delivery id it maps to is missing",
                          401: "Missing or wrong signature, or a timestamp outside the "
                               "tolerance",
                          404: "No such webhook source",
                          413: f"Body larger than {MAX_DELIVERY_BYTES} bytes"},
              description="Answered once the event is stored, before any run starts. "
                          "The body is any JSON object or form; its event name and "
                          "delivery id come from the source's rules."),
)
