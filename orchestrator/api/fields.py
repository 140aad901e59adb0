"""The API's limits and the field types its request models are made of, each check
written once and shown by the schema; and ``validated``, the one place a pydantic
``ValidationError`` becomes the 422 that names the field.

A check that fails raises ``PydanticCustomError(CHECK, message)``, its message naming the
field as ``{field}``: only ``validated`` knows the field's full path (``runs[0].input``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic import WithJsonSchema as Schema
from pydantic_core import ErrorDetails, PydanticCustomError

from orchestrator.errors import Invalid
from sdk import protocol as p

#: The longest id (an event id, a path id, a cursor) and idempotency key the API takes.
MAX_ID_CHARS: Final = 256
MAX_KEY_CHARS: Final = 256
#: The longest other string field (a function name, a reason, a URL, an expression).
MAX_STR_CHARS: Final = 4096
#: The times the API takes (epoch seconds): 0001-01-01 to 9999-12-31, the years a
#: date-time can show.
MIN_EPOCH: Final = -62135596800.0
MAX_EPOCH: Final = 253402300799.0
#: The most runs a run filter (bulk cancel, bulk replay) selects, and its default.
MAX_FILTER_LIMIT: Final = 10_000
DEFAULT_FILTER_LIMIT: Final = 1000

CHECK: Final = "api_check"
"""The pydantic error type of this module's checks: its message is the API's."""
FIELD: Final = "{field}"
NO_NUL: Final = "^[^\\x00]*$"


class Body(BaseModel):
    """A request body: exact types (no ``"5"`` for 5), no field it does not name."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], value: object, where: str = "") -> M:
    """``value`` as ``model``, or ``Invalid`` naming the field at fault under ``where``
    (``""``: the body's own fields are named bare)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc, where) from None


def invalid(exc: ValidationError, where: str = "") -> Invalid:
    """The 422 of ``exc``: its unknown fields if it has any, else its first error."""
    errors = exc.errors(include_url=False)
    extras = [e["loc"] for e in errors if e["type"] == "extra_forbidden"]
    if extras:  # those of the first object that has any
        parent = extras[0][:-1]
        names = sorted(str(loc[-1]) for loc in extras if loc[:-1] == parent)
        return Invalid(f"unknown field(s): {names}", field_name((*parent, names[0]), where))
    first = errors[0]
    name = field_name(first["loc"], where) or "body"
    return Invalid(_message(first, name), name)


def field_name(loc: tuple[int | str, ...], where: str = "") -> str:
    """``("runs", 0, "input")`` as ``runs[0].input``, under ``where``."""
    out = where
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out


def _message(e: ErrorDetails, name: str) -> str:
    kind = e["type"]
    if kind == CHECK:
        return e["msg"].replace(FIELD, name)
    if kind == "missing":
        return f"'{name}' is required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "expected a JSON object"
    return f"'{name}': {e['msg']}"


def check(fn: Callable[[Any, str], Any]) -> BeforeValidator:
    """A validator running ``fn(value, "{field}")``, whose ``Invalid`` becomes this
    module's pydantic error: one implementation for the models and for the helpers that
    call ``fn`` directly."""

    def run(value: Any) -> Any:
        try:
            return fn(value, FIELD)
        except Invalid as exc:
            raise PydanticCustomError(CHECK, exc.message) from None

    return BeforeValidator(run)


# -- the checks ----------------------------------------------------------------------------


def clean_str(v: str, name: str, max_chars: int = MAX_STR_CHARS) -> str:
    """``v`` if it is at most ``max_chars`` long and holds no NUL or lone surrogate (which
    no database column stores), else ``Invalid`` naming ``name``."""
    if len(v) > max_chars:
        raise Invalid(f"'{name}' is longer than {max_chars} characters", name)
    if "\x00" in v:
        raise Invalid(f"'{name}' holds a NUL character", name)
    if not v.isascii():
        try:
            v.encode()
        except UnicodeEncodeError:
            raise Invalid(f"'{name}' holds a lone surrogate (not valid Unicode)", name) \
                from None
    return v


def text_check(max_chars: int) -> Callable[[Any, str], str]:
    """The check of a non-empty ``clean_str`` of at most ``max_chars``."""
    def text(v: Any, name: str) -> str:
        if not isinstance(v, str) or not v:
            raise Invalid(f"'{name}' must be a non-empty string", name)
        return clean_str(v, name, max_chars)
    return text


def json_value(value: Any, field: str, max_bytes: int = p.MAX_STEP_OUTPUT_BYTES) -> Any:
    """``value``, or ``Invalid`` naming ``field``: every route's test for "a JSON value we
    accept" (finite numbers, valid Unicode, at most ``MAX_JSON_DEPTH`` deep, at most
    ``max_bytes`` encoded)."""
    try:
        data = p.dumps_value(value)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"'{field}' is not a JSON value the API takes: {exc}", field) from None
    if len(data) > max_bytes:
        raise Invalid(f"'{field}' is {len(data)} bytes encoded; the limit is {max_bytes}",
                      field)
    return value


def _event_data(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"'{field}' must be a JSON object", field)
    if value:
        json_value(value, field, p.MAX_EVENT_BYTES)
    return value


def epoch(value: Any, field: str) -> float:
    """Epoch seconds (within [MIN_EPOCH, MAX_EPOCH]) from a number or an ISO-8601 string
    with a time zone."""
    out = _epoch(value, field)
    if not MIN_EPOCH <= out <= MAX_EPOCH:  # also false for NaN
        raise Invalid(f"'{field}' must be within 0001-01-01 and 9999-12-31", field)
    return out


def _epoch(value: Any, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            return math.inf
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"'{field}' is not an ISO-8601 time: {value!r}", field) from None
        if dt.tzinfo is None:
            raise Invalid(f"'{field}' needs a time zone (e.g. 'Z' or '+02:00')", field)
        return dt.timestamp()
    raise Invalid(f"'{field}' must be an ISO-8601 time or epoch seconds", field)


def _event_ts(value: Any, field: str) -> float | int | None:
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                              or not MIN_EPOCH <= value <= MAX_EPOCH):
        raise Invalid(f"'ts' must be epoch seconds within [{MIN_EPOCH}, {MAX_EPOCH}]",
                      field)
    return value  # type: ignore[no-any-return]


def _event_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"'{field}' must be a non-empty string", field)
    if not p.EVENT_NAME_RE.match(value):
        raise Invalid("event names are 1-128 of letters, digits, '_', '-', '.', ':'", field)
    return value


def _filter_limit(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) \
            or not 1 <= value <= MAX_FILTER_LIMIT:
        raise Invalid(f"'{field}' must be an integer within [1, {MAX_FILTER_LIMIT}]", field)
    return value


# -- the field types -----------------------------------------------------------------------

_CLEAN = {"type": "string", "minLength": 1, "pattern": NO_NUL}
#: A string the API takes: 1 to MAX_STR_CHARS characters, no NUL, valid Unicode.
Text = Annotated[str, check(text_check(MAX_STR_CHARS)),
                 Schema({**_CLEAN, "maxLength": MAX_STR_CHARS})]
Key = Annotated[str, check(text_check(MAX_KEY_CHARS)),
                Schema({**_CLEAN, "maxLength": MAX_KEY_CHARS,
                        "description": "A key already used for this function returns its "
                        "run"})]
EventId = Annotated[str, check(text_check(MAX_ID_CHARS)),
                    Schema({**_CLEAN, "maxLength": MAX_ID_CHARS})]
JsonValue = Annotated[Any, check(json_value), Schema({"description": "any JSON value"})]
EventName = Annotated[str, check(_event_name),
                      Schema({"type": "string", "pattern": p.EVENT_NAME_RE.pattern})]
EventData = Annotated[dict[str, Any], check(_event_data),
                      Schema({"type": ["object", "null"],
                              "description": "absent or null means {}; at most "
                              f"{p.MAX_JSON_DEPTH} levels deep"})]
EventTs = Annotated[float | int | None, check(_event_ts),
                    Schema({"type": ["number", "null"], "minimum": MIN_EPOCH,
                            "maximum": MAX_EPOCH,
                            "description": "Epoch seconds (absent: now)"})]
TIMESTAMP_SCHEMA: Final = {"oneOf": [
    {"type": "string", "format": "date-time",
     "description": "ISO-8601 with a time zone ('Z', '+02:00')"},
    {"type": "number", "description": "Epoch seconds"}]}
Timestamp = Annotated[float, check(epoch), Schema(TIMESTAMP_SCHEMA)]
FilterLimit = Annotated[int, check(_filter_limit), Schema({
    "type": "integer", "minimum": 1, "maximum": MAX_FILTER_LIMIT,
    "description": "At most this many runs (the oldest first)"})]
