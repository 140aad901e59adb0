"""The OpenAPI 3.1 document served at /api/v1/openapi.json.

It describes every route of ``routes.ROUTES`` and ``control_routes.ROUTES``;
``tests/unit/test_openapi.py`` checks that the two stay in step.
"""

from __future__ import annotations

from typing import Any

from orchestrator.api.responses import MAX_ID_CHARS, MAX_KEY_CHARS, MAX_STR_CHARS
from orchestrator.engine.control import FROM
from orchestrator.engine.engine import MAX_BULK
from sdk import protocol as p

STATUSES = [s.value for s in p.RunStatus]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR_TEXT = {
    "400": "Bad request (a `cursor` this API did not give)",
    "401": "Missing or invalid API key (`Authorization: Bearer <key>`)",
    "404": "Not found",
    "409": "Conflict with the current state",
    "413": "Request body too large (`max_body_bytes`, 4 MiB by default)",
    "422": "Invalid input; `error.field` names the field",
}


def _links(param: str, *operations: str) -> dict[str, Any]:
    """OpenAPI links: the answer's ``id`` is ``param`` of each of ``operations``."""
    return {op[0].upper() + op[1:]: {"operationId": op,
                                     "parameters": {param: "$response.body#/id"}}
            for op in operations}


def _errors(*codes: str, **texts: str) -> dict[str, Any]:
    """Error responses; ``texts`` (``e404="..."``) say when this endpoint answers them."""
    return {c: _json(_ref("Error"), texts.get(f"e{c}", _ERROR_TEXT[c])) for c in codes}


def _body(schema: dict[str, Any], *, required: bool = True,
          description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"required": required,
                           "content": {"application/json": {"schema": schema}}}
    if description:
        out["description"] = description
    return out


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "description": f"{description} (at most {MAX_ID_CHARS} characters; an id that "
                           "cannot exist, such as one holding NUL, is 404)",
            "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), *,
         closed: bool = False, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


_STR = {"type": "string"}
#: A string the API takes: at most MAX_STR_CHARS characters, no NUL.
_ISTR = {"type": "string", "minLength": 1, "maxLength": MAX_STR_CHARS, "pattern": "^[^\\x00]*$"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time", "description": "ISO-8601, UTC ('...Z')"}
_NTIME = {"type": ["string", "null"], "format": "date-time",
          "description": "ISO-8601, UTC ('...Z'), or null"}
_ANY: dict[str, Any] = {"description": "any JSON value"}
_IDS = {"type": "array", "items": _STR}
_RUN_ID = _path("run_id", "A run id")
_FUNCTION_Q = _query("function", _ISTR, "Only those of this function")
_BAD_FUNCTION = "No function by that name is registered"


def _filter_props(**more: Any) -> dict[str, Any]:
    return {
        "function": {**_ISTR, "description": "Runs of this function (a workflow's "
                     "task runs carry the workflow's name)"},
        "status": {"oneOf": [_ref("RunStatus"),
                             {"type": "array", "items": _ref("RunStatus")}],
                   "description": "One status or a list of statuses"},
        "since": {**_ref("Timestamp"), "description": "Runs created at or after this time"},
        "until": {**_ref("Timestamp"), "description": "Runs created before this time"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1000,
                  "description": "At most this many runs (the oldest first)"},
        **more,
    }


_AT_LEAST_ONE: dict[str, Any] = {
    "anyOf": [{"required": [k]} for k in ("function", "status", "since", "until")],
    "description": "A run filter: give at least one of function, status, since, until.",
}

_EVENT = _obj({
    "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"},
    "data": {"type": ["object", "null"], "description": "absent or null means {}; at most "
             f"{p.MAX_JSON_DEPTH} levels deep"},
    "id": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_ID_CHARS,
           "pattern": "^[^\\x00]*$",
           "description": "Idempotency key: an event with a known id is accepted and ignored "
           "(its answer says `duplicate: true`; absent: a new id is made)"},
    "ts": {"type": ["number", "null"], "minimum": -62135596800, "maximum": 253402300799,
           "description": "Epoch seconds (absent: now)"},
}, ("name",), description=f"At most {p.MAX_EVENT_BYTES} bytes as JSON")

_RETRY = _obj({
    "max_attempts": {"type": "integer", "minimum": 1, "default": 3},
    "initial_delay": {"type": "number", "minimum": 0, "default": 1.0},
    "factor": {"type": "number", "minimum": 1, "default": 2.0},
    "max_delay": {"type": "number", "minimum": 0, "default": 300.0},
    "jitter": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.2},
})

_SECONDS = {"type": "number", "exclusiveMinimum": 0}

_TASK_CONFIG = _obj({
    "name": _STR,
    "parents": {"type": "array", "items": _STR,
                "description": "Tasks that must end completed or skipped first"},
    "conditional": {"type": "boolean", "description": "Declared with skip_if"},
    "retry": _ref("Retry"),
    "timeout": {**_SECONDS, "description": "Run timeout of the task, seconds"},
}, ("name",))

_FUNCTION_CONFIG = _obj({
    "name": _STR,
    "kind": {"enum": ["task", "workflow"], "default": "task"},
    "triggers": {"type": "array", "items": _obj({"event": _STR}, ("event",))},
    "retry": _ref("Retry"),
    "timeout": {**_SECONDS, "description": "Run timeout, seconds"},
    "queue_timeout": {**_SECONDS, "description": "Longest wait for the first answer, seconds"},
    "crons": {"type": "array", "items": _obj({
        "expression": _STR, "timezone": {"type": "string", "default": "UTC"},
        "input": _ANY}, ("expression",))},
    "cancel_on": {"type": "array", "items": _obj({
        "event": _STR,
        "match": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "event path -> run path ('input.x' or 'event.data.x')"}},
        ("event",))},
    "tasks": {"type": "array", "items": _ref("TaskConfig"), "description": "Workflows only"},
    "on_failure": {**_ref("TaskConfig"), "description": "Workflows only"},
}, ("name",), description="A function's configuration, as its app declared it")

_WAITING = _obj({
    "kind": {"enum": ["sleep", "event", "children", "retry", "resume", "delivery_retry",
                      "app_misconfigured", "on_failure"]},
    "step": _STR, "until": _TIME, "at": _TIME, "timeout_at": _NTIME,
    "event": _STR, "match": {"type": "object"},
    "pending": {"type": "integer"}, "total": {"type": "integer"},
    "attempt": {"type": "integer"}, "error": {"type": "object"},
    "reason": _STR, "failures": {"type": "integer"},
    "task": _STR, "failed_task": _STR,
}, ("kind",), description="What a queued or running run waits for; the fields depend on kind")

_RUN_SUMMARY = _obj({
    "id": _STR,
    "function": _STR,
    "status": _ref("RunStatus"),
    "attempt": {"type": "integer", "description": "Run-level attempt, 0 on the first"},
    "parent_id": {**_NSTR, "description": "The parent run (child runs, workflow tasks)"},
    "task": {**_NSTR, "description": "The workflow task this run is (null otherwise)"},
    "waiting": {"oneOf": [_ref("Waiting"), {"type": "null"}],
                "description": "Only while queued or running"},
    "error": {"type": ["object", "null"],
              "description": "{type, message, ...} of a failed, cancelled or timed-out run"},
    "created_at": _TIME,
    "started_at": _NTIME,
    "ended_at": _NTIME,
}, ("id", "function", "status", "attempt", "parent_id", "task", "waiting", "error",
    "created_at", "started_at", "ended_at"))

_STEP = _obj({
    "id": _STR, "name": _STR,
    "kind": {"enum": [k.value for k in p.MemoKind]},
    "status": {"enum": [s.value for s in p.StepStatus]},
    "attempts": {"type": "integer"},
    "output": _ANY, "error": {"type": ["object", "null"]},
    "started_at": _NTIME, "ended_at": _NTIME,
})

_HISTORY = _obj({
    "replayed_at": _TIME,
    "from": {"enum": list(FROM)},
    "status": _ref("RunStatus"),
    "attempt": {"type": "integer"},
    "error": {"type": ["object", "null"]},
    "started_at": _NTIME,
    "ended_at": _NTIME,
    "steps": {"type": "array", "description": "The steps that ran again", "items": _obj({
        "id": _STR, "kind": _STR, "status": _STR, "attempts": {"type": "integer"},
        "error": {"type": ["object", "null"]}})},
}, description="An earlier attempt of a replayed run")

_RUN = {"allOf": [_ref("RunSummary"), _obj({
    "input": _ANY,
    "event": {"oneOf": [_ref("StoredEvent"), {"type": "null"}],
              "description": "The event that started the run"},
    "output": _ANY,
    "idempotency_key": _NSTR,
    "steps": {"type": "array", "items": _ref("Step"), "description": "The run's memo"},
    "children": {"type": "array", "items": _obj({
        "id": _STR, "function": _STR, "status": _ref("RunStatus"),
        "step": {**_NSTR, "description": "The step (or workflow task) that started it"},
        "task": {**_NSTR, "description": "The workflow task it runs"}})},
    "parents": {"type": ["object", "null"],
                "additionalProperties": _obj({"status": _ref("RunStatus"), "output": _ANY,
                                              "error": {"type": "object"}}),
                "description": "A task run's parents when it started: {task: {status, output?, "
                "error?}}"},
    "failure": {"type": ["object", "null"],
                "description": "An on_failure task run's failure: {task, status, error?}"},
    "history": {"type": "array", "items": _ref("HistoryEntry")},
    "tasks": {"type": "array", "description": "A workflow run's declared tasks (its on_failure "
              "task last), each with its run's id and status, or `not started`",
              "items": _obj({"name": _STR, "id": _NSTR,
                             "status": {"anyOf": [_ref("RunStatus"), {"const": "not started"}]}},
                            ("name", "id", "status"))},
}, ("input", "event", "output", "idempotency_key", "steps", "children", "parents",
    "failure", "history"))]}

_APP = _obj({"id": _STR, "url": _STR, "sdk": _NSTR, "synced_at": _TIME,
             "functions": {"type": "array", "items": _STR},
             "status": {"enum": ["ok", "misconfigured"]}, "error": _NSTR},
            ("id", "url", "sdk", "synced_at", "functions", "status", "error"))

_SCHEDULE = _obj({
    "id": _STR, "function": _STR, "at": _TIME, "input": _ANY,
    "run_id": {**_NSTR, "description": "The run it started, once it fired"},
    "created_at": _TIME,
}, ("id", "function", "at", "input", "run_id", "created_at"))

_CRON = _obj({
    "id": _STR, "function": _STR, "expression": _STR, "timezone": _STR, "input": _ANY,
    "source": {"enum": ["api", "code"],
               "description": "code: declared with the function (deleted by re-syncing)"},
    "next_fire_at": _NTIME, "last_fire_at": _NTIME, "created_at": _TIME,
}, ("id", "function", "expression", "timezone", "input", "source", "next_fire_at",
    "last_fire_at", "created_at"))

_CREATE_RUN = _obj({
    "function": _STR,
    "input": _ANY,
    "idempotency_key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS,
                        "pattern": "^[^\\x00]*$",
                        "description": "A key already used for this function returns its run"},
}, ("function",), closed=True)

_BULK = {"oneOf": [
    _obj({"function": _STR,
          "inputs": {"type": "array", "items": _ANY, "minItems": 1, "maxItems": MAX_BULK}},
         ("function", "inputs"), closed=True),
    _obj({"runs": {"type": "array", "minItems": 1, "maxItems": MAX_BULK,
                   "items": _ref("CreateRun")}}, ("runs",), closed=True),
]}

_CANCEL_MANY = _obj(_filter_props(reason=_STR), closed=True, **_AT_LEAST_ONE)
_CANCEL_MANY["description"] += (" Without status, queued and running runs; runs that already "
                                "ended are left alone.")
_REPLAY_BODY = _obj({
    "from": {"enum": list(FROM), "default": "failed_step",
             "description": "failed_step keeps what succeeded; start runs everything again"},
    "input": {**_ANY, "description": "A new input: only with \"from\": \"start\""},
}, closed=True)
_REPLAY_MANY = _obj(_filter_props(**{"from": _REPLAY_BODY["properties"]["from"]}),
                    closed=True, **_AT_LEAST_ONE)
_REPLAY_MANY["description"] += (" Only failed, cancelled or timed_out runs are replayed (the "
                                "default statuses); a workflow's task runs are skipped.")

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({
        "code": {"enum": ["bad_request", "validation_error", "not_found", "conflict",
                          "unauthorized", "too_large", "method_not_allowed", "http_error",
                          "internal_error"]},
        "message": _STR,
        "field": {"type": "string", "description": "The field at fault, if one is"},
        "request_id": {"type": "string", "description": "A 500's request id (as in the "
                       "x-request-id header): the log has the details under it"},
    }, ("code", "message"))}, ("error",)),
    "RunStatus": {"enum": STATUSES, "description": "queued and running are active; the "
                  "others are final (skipped: a workflow task whose condition said so)"},
    "Timestamp": {"oneOf": [{"type": "string", "format": "date-time",
                             "description": "ISO-8601 with a time zone ('Z', '+02:00')"},
                            {"type": "number", "description": "Epoch seconds"}]},
    "Event": _EVENT,
    "StoredEvent": _obj({"id": _STR, "name": _STR, "data": {"type": "object"},
                         "ts": {"type": "number"}}, ("id", "name", "data", "ts")),
    "Retry": _RETRY,
    "TaskConfig": _TASK_CONFIG,
    "FunctionConfig": _FUNCTION_CONFIG,
    "Function": {"allOf": [_ref("FunctionConfig"), _obj({"app_id": _STR, "url": _STR},
                                                        ("app_id", "url"))]},
    "App": _APP,
    "RegisteredApp": _obj({"id": _STR, "url": _STR, "sdk": _NSTR, "synced_at": _TIME,
                           "functions": {"type": "array", "items": _ref("FunctionConfig")}},
                          ("id", "url", "sdk", "synced_at", "functions")),
    "Waiting": _WAITING,
    "RunSummary": _RUN_SUMMARY,
    "Step": _STEP,
    "HistoryEntry": _HISTORY,
    "Run": _RUN,
    "RunId": _obj({"id": _STR}, ("id",)),
    "CreateRun": _CREATE_RUN,
    "BulkRuns": _BULK,
    "CancelRuns": _CANCEL_MANY,
    "ReplayRun": _REPLAY_BODY,
    "ReplayRuns": _REPLAY_MANY,
    "Schedule": _SCHEDULE,
    "CreateSchedule": _obj({"function": _STR, "at": _ref("Timestamp"), "input": _ANY},
                           ("function", "at"), closed=True),
    "Cron": _CRON,
    "CreateCron": _obj({
        "function": _STR,
        "expression": {"type": "string", "description": "5 fields (minute hour day month "
                       "weekday) or 6 with seconds first"},
        "timezone": {"type": "string", "default": "UTC", "description": "An IANA name"},
        "input": _ANY,
    }, ("function", "expression"), closed=True),
}

_PUBLIC: list[dict[str, Any]] = []  # an operation's `security` override: no API key

PATHS: dict[str, Any] = {
    # -- service --------------------------------------------------------------------------
    "/healthz": {"get": {
        "operationId": "healthz", "tags": ["service"], "security": _PUBLIC,
        "summary": "Liveness",
        "responses": {"200": _json(_obj({"status": {"const": "ok"}}, ("status",)))},
    }},
    "/readyz": {"get": {
        "operationId": "readyz", "tags": ["service"], "security": _PUBLIC,
        "summary": "Readiness: the engine started and its database answers",
        "responses": {
            "200": _json(_obj({"status": {"const": "ready"}}, ("status",)), "Ready"),
            "503": _json(_obj({"status": {"const": "not ready"}}, ("status",)), "Not ready"),
        },
    }},
    "/api/v1/openapi.json": {"get": {
        "operationId": "openapi", "tags": ["service"], "security": _PUBLIC,
        "summary": "This document (no API key needed)",
        "responses": {"200": _json({"type": "object"})},
    }},
    # -- apps and functions ---------------------------------------------------------------
    "/api/v1/apps": {
        "post": {
            "operationId": "registerApp", "tags": ["apps"],
            "summary": "Register or re-sync an app by URL (the orchestrator introspects it)",
            "requestBody": _body(_obj({"url": {"type": "string", "format": "uri",
                                               "description": "Absolute http(s) URL"}},
                                      ("url",))),
            "responses": {
                "200": _json(_ref("RegisteredApp")),
                **_errors("401", "409", "413", "422",
                          e409="A function name is already registered by another app",
                          e422="Invalid URL, app unreachable, bad signature or invalid "
                          "declarations (field 'url' or 'functions')"),
            },
        },
        "get": {
            "operationId": "listApps", "tags": ["apps"], "summary": "List apps",
            "responses": {"200": _json(_obj({"apps": {"type": "array",
                                                      "items": _ref("App")}}, ("apps",))),
                          **_errors("401")},
        },
    },
    "/api/v1/functions": {"get": {
        "operationId": "listFunctions", "tags": ["apps"], "summary": "List functions",
        "responses": {"200": _json(_obj({"functions": {"type": "array",
                                                       "items": _ref("Function")}},
                                        ("functions",))),
                      **_errors("401")},
    }},
    # -- events ---------------------------------------------------------------------------
    "/api/v1/events": {"post": {
        "operationId": "sendEvents", "tags": ["events"],
        "summary": "Send one event or a list of up to 1000 events",
        "description": "Stores the events, starts the runs they trigger, resumes the runs "
                       "waiting for them and cancels the runs they cancel.",
        "requestBody": _body({"oneOf": [
            _ref("Event"),
            {"type": "array", "items": _ref("Event"), "minItems": 1, "maxItems": 1000}]}),
        "responses": {
            "202": _json(_obj({
                "ids": {**_IDS, "description": "The events' ids, in order"},
                "runs": {"type": "array", "items": _IDS,
                         "description": "Per event, the runs it started (for a duplicate: "
                         "the runs its first delivery started)"},
                "duplicate": {"type": "array", "items": {"type": "boolean"},
                              "description": "Per event, whether its id was known (sent "
                              "before, or earlier in the list): accepted and ignored, it "
                              "started and resumed nothing"},
            }, ("ids", "runs", "duplicate")), "Accepted"),
            **_errors("401", "413", "422"),
        },
    }},
    # -- runs -----------------------------------------------------------------------------
    "/api/v1/runs": {
        "post": {
            "operationId": "startRun", "tags": ["runs"], "summary": "Start a run",
            "parameters": [_query(
                "wait", {"type": "number", "minimum": 0, "maximum": 60},
                "Also wait up to this many seconds for the run to end, and answer with the "
                "run (as GET /runs/{run_id}/wait does) instead of its id")],
            "requestBody": _body(_ref("CreateRun")),
            "responses": {
                "201": {**_json({"anyOf": [_ref("RunId"), _ref("Run")]},
                                "Started (or found by its idempotency key): its id, or "
                                "with ?wait= the run"),
                        "links": _links("run_id", "getRun", "waitRun", "cancelRun",
                                        "replayRun")},
                **_errors("401", "404", "413", "422", e404=_BAD_FUNCTION),
            },
        },
        "get": {
            "operationId": "listRuns", "tags": ["runs"], "summary": "List runs, newest first",
            "parameters": [
                _FUNCTION_Q,
                _query("status", _ref("RunStatus"), "Only runs with this status"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500,
                                 "default": 50}, "Page size"),
                _query("cursor", _STR, "next_cursor of the previous page (anything else "
                       "is 400)"),
            ],
            "responses": {
                "200": _json(_obj({
                    "runs": {"type": "array", "items": _ref("RunSummary")},
                    "next_cursor": {**_NSTR, "description": "null on the last page"},
                }, ("runs", "next_cursor"))),
                **_errors("400", "401", "422"),
            },
        },
    },
    "/api/v1/runs/bulk": {"post": {
        "operationId": "startRuns", "tags": ["runs"],
        "summary": f"Start up to {MAX_BULK} runs in one transaction (all or none)",
        "requestBody": _body(_ref("BulkRuns")),
        "responses": {
            "201": _json(_obj({"ids": {**_IDS, "description": "In the order given"}},
                              ("ids",)), "Started"),
            **_errors("401", "404", "413", "422", e404=_BAD_FUNCTION),
        },
    }},
    "/api/v1/runs/cancel": {"post": {
        "operationId": "cancelRuns", "tags": ["control"],
        "summary": "Cancel the runs a filter selects (and their descendants)",
        "requestBody": _body(_ref("CancelRuns")),
        "responses": {
            "200": _json(_obj({"cancelled": {**_IDS, "description": "Every run ended"}},
                              ("cancelled",))),
            **_errors("401", "413", "422"),
        },
    }},
    "/api/v1/runs/replay": {"post": {
        "operationId": "replayRuns", "tags": ["control"],
        "summary": "Replay the failed, cancelled or timed-out runs a filter selects",
        "requestBody": _body(_ref("ReplayRuns")),
        "responses": {
            "200": _json(_obj({"replayed": _IDS}, ("replayed",))),
            **_errors("401", "413", "422"),
        },
    }},
    "/api/v1/runs/{run_id}": {"get": {
        "operationId": "getRun", "tags": ["runs"],
        "summary": "A run with its input, output, steps, children, task, parents, history",
        "parameters": [_RUN_ID],
        "responses": {"200": _json(_ref("Run")), **_errors("401", "404")},
    }},
    "/api/v1/runs/{run_id}/wait": {"get": {
        "operationId": "waitRun", "tags": ["runs"],
        "summary": "Long-poll until the run ends, or timeout seconds pass",
        "description": "Answers with the run as it is then: check its status.",
        "parameters": [_RUN_ID, _query("timeout", {"type": "number", "minimum": 0,
                                                   "maximum": 60, "default": 25},
                                       "Seconds to wait at most")],
        "responses": {"200": _json(_ref("Run")), **_errors("401", "404", "422")},
    }},
    "/api/v1/runs/{run_id}/cancel": {"post": {
        "operationId": "cancelRun", "tags": ["control"],
        "summary": "Cancel a run and its unfinished descendants",
        "parameters": [_RUN_ID],
        "requestBody": _body(_obj({"reason": _STR}, closed=True), required=False),
        "responses": {
            "200": _json(_obj({"id": _STR, "cancelled": {
                **_IDS, "description": "The run and the descendants ended"}},
                ("id", "cancelled"))),
            **_errors("401", "404", "409", "413", "422", e409="The run already ended"),
        },
    }},
    "/api/v1/runs/{run_id}/replay": {"post": {
        "operationId": "replayRun", "tags": ["control"],
        "summary": "Run a failed, cancelled or timed-out run again",
        "description": "From its failed step (what succeeded is kept) or from the start "
                       "(optionally with a new input). The earlier attempt goes to the run's "
                       "history. A workflow replays its failed tasks (or all of them).",
        "parameters": [_RUN_ID],
        "requestBody": _body(_ref("ReplayRun"), required=False),
        "responses": {
            "200": _json(_obj({"id": _STR, "status": {"const": "replayed"},
                               "from": {"enum": list(FROM)}}, ("id", "status", "from"))),
            **_errors("401", "404", "409", "413", "422",
                      e409="The run is not failed, cancelled or timed out, or it is a "
                      "workflow's task (replay the workflow)"),
        },
    }},
    # -- schedules ------------------------------------------------------------------------
    "/api/v1/schedules": {
        "post": {
            "operationId": "createSchedule", "tags": ["schedules"],
            "summary": "Start one run at a given time",
            "requestBody": _body(_ref("CreateSchedule")),
            "responses": {"201": {**_json(_ref("Schedule"), "Created"),
                                  "links": _links("sid", "getSchedule", "deleteSchedule")},
                          **_errors("401", "404", "413", "422", e404=_BAD_FUNCTION,
                                    e422="Invalid input, or 'at' is in the past")},
        },
        "get": {
            "operationId": "listSchedules", "tags": ["schedules"],
            "summary": "Pending schedules (not fired yet), soonest first, at most 1000",
            "parameters": [_FUNCTION_Q],
            "responses": {"200": _json(_obj({"schedules": {"type": "array",
                                                           "items": _ref("Schedule")}},
                                            ("schedules",))),
                          **_errors("401", "422")},
        },
    },
    "/api/v1/schedules/{sid}": {
        "get": {
            "operationId": "getSchedule", "tags": ["schedules"],
            "summary": "A schedule (run_id is set once it fired)",
            "parameters": [_path("sid", "A schedule id")],
            "responses": {"200": _json(_ref("Schedule")), **_errors("401", "404")},
        },
        "delete": {
            "operationId": "deleteSchedule", "tags": ["schedules"],
            "summary": "Delete a schedule that has not fired",
            "parameters": [_path("sid", "A schedule id")],
            "responses": {"204": {"description": "Deleted"},
                          **_errors("401", "404", "409", e409="The schedule already fired")},
        },
    },
    # -- crons ----------------------------------------------------------------------------
    "/api/v1/crons": {
        "post": {
            "operationId": "createCron", "tags": ["crons"],
            "summary": "Create a cron trigger",
            "requestBody": _body(_ref("CreateCron")),
            "responses": {"201": {**_json(_ref("Cron"), "Created"),
                                  "links": _links("cid", "deleteCron")},
                          **_errors("401", "404", "413", "422", e404=_BAD_FUNCTION,
                                    e422="Invalid input, expression or time zone")},
        },
        "get": {
            "operationId": "listCrons", "tags": ["crons"],
            "summary": "Cron triggers, declared in code or created through the API",
            "parameters": [_FUNCTION_Q],
            "responses": {"200": _json(_obj({"crons": {"type": "array",
                                                       "items": _ref("Cron")}}, ("crons",))),
                          **_errors("401", "422")},
        },
    },
    "/api/v1/crons/{cid}": {"delete": {
        "operationId": "deleteCron", "tags": ["crons"],
        "summary": "Delete a cron trigger created through the API",
        "parameters": [_path("cid", "A cron id")],
        "responses": {"204": {"description": "Deleted"},
                      **_errors("401", "404", "409",
                                e409="The cron is declared in code (remove it there and "
                                "re-sync the app)")},
    }},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Durable orchestrator API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
    },
    "security": [{"bearer": []}],
    "paths": PATHS,
}
