"""The request bodies of the REST API, as pydantic models: what the handlers validate
against and what the OpenAPI document shows (``openapi.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ModelWrapValidatorHandler, model_validator
from pydantic import WithJsonSchema as Schema
from pydantic_core import PydanticCustomError

from orchestrator.api.fields import (
    CHECK,
    DEFAULT_FILTER_LIMIT,
    MAX_ID_CHARS,
    MAX_KEY_CHARS,
    MAX_STR_CHARS,
    NO_NUL,
    TIMESTAMP_SCHEMA,
    Body,
    EventData,
    EventName,
    EventTs,
    FilterLimit,
    JsonValue,
    Text,
    Timestamp,
    check,
    clean_str,
    epoch,
    text_check,
)
from orchestrator.engine.answers import DigestEncoding, HashAlgorithm, Scope, WebhookKind
from orchestrator.engine.control import FROM
from orchestrator.engine.engine import MAX_BULK
from orchestrator.engine.webhook_sources import DEFAULT_GRACE
from orchestrator.engine.webhooks import DEFAULT_TOLERANCE
from orchestrator.errors import Invalid
from sdk import flow
from sdk import protocol as p

#: The most events one ``POST /events`` takes.
MAX_EVENTS_PER_REQUEST: Final = 1000
STATUSES: Final = tuple(s.value for s in p.RunStatus)
_STATUS: Final = {"enum": list(STATUSES)}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _maybe_text(max_chars: int) -> Callable[[Any, str], str | None]:
    """The check of a string that may be absent or null (``None``)."""
    required = text_check(max_chars)

    def text(v: Any, name: str) -> str | None:
        return None if v is None else required(v, name)
    return text


def _nullable_text(max_chars: int, description: str = "") -> Schema:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_chars,
                              "pattern": NO_NUL}
    out = _null(schema)
    if description:
        out["description"] = description
    return Schema(out)


def _optional_epoch(v: Any, name: str) -> float | None:
    return None if v is None else epoch(v, name)


def _statuses(v: Any, name: str) -> tuple[str, ...]:
    statuses = [v] if isinstance(v, str) else v
    if not isinstance(statuses, list) or any(s not in STATUSES for s in statuses):
        raise Invalid(f"'{name}' must be one or a list of {list(STATUSES)}", name)
    return tuple(statuses)


def _from(v: Any, name: str) -> str:
    if v not in FROM:
        raise Invalid(f"'{name}' must be one of {list(FROM)}", name)
    return str(v)


def _bulk(v: Any, name: str) -> list[Any]:
    if not isinstance(v, list) or not v:
        raise Invalid(f"'{name}' must be a non-empty list", name)
    if len(v) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} runs per request", name)
    return v


def _url(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v:
        raise Invalid(f"'{name}' must be a non-empty string", name)
    clean_str(v, name)
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise Invalid(f"'{name}' is not a valid URL", name) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"'{name}' must be an absolute http(s) URL", name)
    return v


OptionalText = Annotated[str | None, check(_maybe_text(MAX_STR_CHARS)),
                         _nullable_text(MAX_STR_CHARS)]
OptionalKey = Annotated[str | None, check(_maybe_text(MAX_KEY_CHARS)), _nullable_text(
    MAX_KEY_CHARS, "A key already used for this function returns its run")]
OptionalEventId = Annotated[str | None, check(_maybe_text(MAX_ID_CHARS)), _nullable_text(
    MAX_ID_CHARS, "Idempotency key: an event with a known id is accepted and ignored (its "
    "answer says `duplicate: true`; absent: a new id is made)")]
Timezone = Annotated[str | None, check(_maybe_text(MAX_STR_CHARS)),
                     _nullable_text(MAX_STR_CHARS, "An IANA name (absent: UTC)")]
OptionalTimestamp = Annotated[float | None, check(_optional_epoch),
                              Schema(_null(TIMESTAMP_SCHEMA))]
def _priority(v: Any, name: str) -> int | None:
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not \
            flow.MIN_PRIORITY <= v <= flow.MAX_PRIORITY:
        raise Invalid(f"'{name}' must be an integer within [{flow.MIN_PRIORITY}, "
                      f"{flow.MAX_PRIORITY}]", name)
    return v


OptionalPriority = Annotated[int | None, check(_priority), Schema({
    "type": ["integer", "null"], "minimum": flow.MIN_PRIORITY, "maximum": flow.MAX_PRIORITY,
    "description": "Claimed before lower priorities of the function, aged so none starves "
    "(absent: the function's declared priority, else 1)"})]
Statuses = Annotated[tuple[str, ...], check(_statuses), Schema({
    "oneOf": [_STATUS, {"type": "array", "items": _STATUS}],
    "description": "One status or a list of statuses"})]
Start = Annotated[str, check(_from), Schema({
    "enum": list(FROM), "default": "failed_step",
    "description": "failed_step keeps what succeeded; start runs everything again"})]
def _signing_key(v: Any, name: str) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or not MIN_SIGNING_KEY_CHARS <= len(v) <= MAX_KEY_CHARS:
        raise Invalid(f"'{name}' must be a string of {MIN_SIGNING_KEY_CHARS} to "
                      f"{MAX_KEY_CHARS} characters", name)
    return clean_str(v, name, MAX_KEY_CHARS)


#: The shortest signing key an app may be given (a generated one is 43 characters).
MIN_SIGNING_KEY_CHARS: Final = 16
SigningKey = Annotated[str | None, check(_signing_key), Schema(_null({
    "type": "string", "minLength": MIN_SIGNING_KEY_CHARS, "maxLength": MAX_KEY_CHARS,
    "pattern": NO_NUL, "description": "A signing key (a secret, never shown again)"}))]
BudgetMs = Annotated[int | None, Field(gt=0, description=(
    "Milliseconds the app may spend per call before it yields (below the call timeout; "
    "null: the orchestrator's default)"))]
AppUrl = Annotated[str, check(_url), Schema({"type": "string", "format": "uri",
                                             "description": "Absolute http(s) URL"})]


class RegisterApp(Body):
    """An app to register (or re-sync) by its URL."""

    model_config = ConfigDict(extra="ignore")
    url: AppUrl
    signing_key: SigningKey = None
    budget_ms: BudgetMs = None
    generate_key: bool = Field(False, strict=True, description=(
        "Also generate a signing key of the app's own, answered this once (as "
        "signing_key): it is accepted at once, beside the key the app signs with now, and "
        "becomes the primary when rotated in (POST /api/v1/apps/{id}/keys)"))


class CreateRun(Body):
    function: Text
    input: JsonValue = None
    idempotency_key: OptionalKey = None
    priority: OptionalPriority = None


class BulkInputs(Body):
    """Runs of one function, one per input."""

    function: Text
    inputs: Annotated[list[JsonValue], check(_bulk), Field(min_length=1, max_length=MAX_BULK)]
    priority: OptionalPriority = None


class BulkRunList(Body):
    """Runs of any functions, each with its own input and idempotency key."""

    runs: Annotated[list[CreateRun], check(_bulk), Field(min_length=1, max_length=MAX_BULK)]


def _at_least_one(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [{"required": [k]} for k in ("function", "status", "since", "until")]


class RunFilterBody(Body):
    """A run filter: give at least one of function, status, since, until."""

    model_config = ConfigDict(json_schema_extra=_at_least_one)
    function: OptionalText = None
    status: Statuses = ()
    since: OptionalTimestamp = None
    until: OptionalTimestamp = None
    limit: FilterLimit = DEFAULT_FILTER_LIMIT

    @model_validator(mode="after")
    def _some(self) -> RunFilterBody:
        if self.function is None and not self.status and self.since is None \
                and self.until is None:
            raise PydanticCustomError(CHECK, "give at least one of function, status, "
                                             "since, until")
        return self


class CancelRuns(RunFilterBody):
    """A run filter: give at least one of function, status, since, until. Without status,
    queued and running runs; runs that already ended are left alone."""

    reason: OptionalText = None


class ReplayRuns(RunFilterBody):
    """A run filter: give at least one of function, status, since, until. Only failed,
    cancelled or timed_out runs are replayed (the default statuses); a workflow's task runs
    are skipped."""

    start: Start = Field("failed_step", alias="from")


class CancelRun(Body):
    reason: OptionalText = None


class ReplayRun(Body):
    """From the failed step, or from the start (optionally with a new input)."""

    start: Start = Field("failed_step", alias="from")
    input: Annotated[JsonValue, Field(description="A new input: only with \"from\": "
                                                  "\"start\"")] = None


class CreateSchedule(Body):
    function: Text
    at: Timestamp
    input: JsonValue = None
    priority: OptionalPriority = None


class CreateCron(Body):
    function: Text
    expression: Annotated[Text, Field(description="5 fields (minute hour day month weekday) "
                                                  "or 6 with seconds first")]
    timezone: Timezone = None
    input: JsonValue = None


class Event(Body):
    """An event (fields it does not name are ignored)."""

    model_config = ConfigDict(extra="ignore")
    name: EventName
    id: OptionalEventId = None
    data: EventData = Field(default_factory=dict)
    ts: EventTs = None

    @model_validator(mode="wrap")
    @classmethod
    def _size(cls, value: Any, handler: ModelWrapValidatorHandler[Event]) -> Event:
        out = handler(value)
        size = len(p.dumps(value))
        if size > p.MAX_EVENT_BYTES:
            raise PydanticCustomError(CHECK, f"event is {size} bytes; the limit is "
                                             f"{p.MAX_EVENT_BYTES}")
        return out


class CreateKey(Body):
    name: Annotated[Text, Field(description="What the key is for (shown in lists)")]
    scopes: Annotated[list[Scope], Field(
        min_length=1, description="admin: everything; events: send events only; read: "
                                  "read runs, functions, events, schedules and crons")]


# -- webhooks ------------------------------------------------------------------------------

def _short(v: Any, name: str) -> str:
    """A string of at most 128 characters, which may be empty (a prefix)."""
    if not isinstance(v, str):
        raise Invalid(f"'{name}' must be a string", name)
    return clean_str(v, name, 128)


Short = Annotated[str, check(_short), Schema({"type": "string", "maxLength": 128,
                                              "pattern": NO_NUL})]
Secret = Annotated[str | None, check(_maybe_text(MAX_KEY_CHARS)), _nullable_text(
    MAX_KEY_CHARS, "The shared secret (absent: one is made; Stripe's and Slack's are "
    "theirs: give them)")]


class WebhookEventRule(Body):
    """The event's name: ``prefix`` + a header's value, a dotted body field's, or the
    constant ``key``."""

    source: Literal["header", "field", "constant"]
    key: Text
    prefix: Short = ""


class WebhookIdRule(Body):
    """The delivery id (the event's idempotency key): a header, a dotted body field, or
    none (every delivery is new)."""

    source: Literal["header", "field", "none"]
    key: Short = ""

    @model_validator(mode="after")
    def _keyed(self) -> WebhookIdRule:
        if self.source != "none" and not self.key:
            raise PydanticCustomError(CHECK, f"a {self.source} id rule needs a 'key'")
        return self


class WebhookSignatureBody(Body):
    """A generic source's HMAC of the raw body."""

    header: Annotated[Text, Field(max_length=128)] = "X-Signature"
    algorithm: HashAlgorithm = "sha256"
    encoding: DigestEncoding = "hex"
    prefix: Short = ""


class CreateWebhook(Body):
    kind: WebhookKind
    secret: Secret = None
    event: Annotated[WebhookEventRule | None, Field(
        description="Absent: github X-GitHub-Event, stripe the field type, slack the "
                    "constant command, each with the prefix '<kind>.' (required for "
                    "generic and none)")] = None
    delivery_id: Annotated[WebhookIdRule | None, Field(
        description="Absent: github X-GitHub-Delivery, stripe the field id, slack the "
                    "field trigger_id; generic and none: none")] = None
    signature: WebhookSignatureBody = WebhookSignatureBody()
    tolerance: Annotated[float, Field(gt=0, le=86400, description="Stripe and Slack: the "
                                      "timestamp's tolerance in seconds")] = DEFAULT_TOLERANCE


class RotateWebhookSecret(Body):
    secret: Secret = None
    grace_seconds: Annotated[float, Field(ge=0, le=30 * 86400, description=(
        "How long the old secret is still accepted (0: not at all); a later rotation "
        "drops it"))] = DEFAULT_GRACE


class RotateKey(Body):
    """The app's new primary signing key: given, or (absent) generated."""

    key: SigningKey = None


class UpdateApp(Body):
    budget_ms: BudgetMs
