"""JSON responses, and reading a request's body, path and query with clear 4xx errors."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.api.fields import MAX_ID_CHARS, MAX_STR_CHARS, M, clean_str, validated
from orchestrator.engine.engine import Engine
from orchestrator.errors import ApiError, Invalid, NotFound, TooLarge
from sdk import protocol as p

#: The levels a request body may add around a JSON value (``{"runs": [{"input": ...}]}``).
BODY_ENVELOPE = 4


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(err: ApiError) -> JSON:
    return JSON(err.body(), status_code=err.status)


async def read_body(request: Request, model: type[M], *, empty_ok: bool = False) -> M:
    """The request's JSON body as ``model`` (``{}`` for no body when ``empty_ok``),
    size-limited."""
    if empty_ok and request.headers.get("content-length") in (None, "0"):
        return validated(model, {})
    return validated(model, await read_json(request, engine_of(request).settings.max_body_bytes))


async def read_bytes(request: Request, limit: int) -> bytearray:
    """The raw body, or ``TooLarge`` past ``limit`` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"request body exceeds {limit} bytes")
    return body


async def read_json(request: Request, limit: int) -> Any:
    body = await read_bytes(request, limit)
    if not body:
        raise Invalid("request body is empty; send JSON", "body")
    max_depth = p.MAX_JSON_DEPTH + BODY_ENVELOPE
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise Invalid(f"request body nests deeper than {max_depth} levels", "body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"request body is not valid JSON: {exc}", "body") from None
    if body.count(b"[") + body.count(b"{") > max_depth:  # only then can it be too deep
        problem = p.json_problem(value, max_depth)
        if problem is not None:
            raise Invalid(f"request body {problem}", "body")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(literal: str) -> float:
    v = float(literal)
    if not math.isfinite(v):
        raise ValueError(f"the number {literal[:40]} is out of range")
    return v


def path_id(request: Request, name: str) -> str:
    """The path parameter ``name``: an id the database could hold, else 404 (no such
    thing can exist) naming ``id``."""
    v: str = request.path_params[name]
    try:
        return clean_str(v, "id", MAX_ID_CHARS)
    except Invalid as exc:
        raise NotFound(f"no such id: {exc.message}", "id") from None


def query_str(request: Request, name: str, max_chars: int = MAX_STR_CHARS) -> str | None:
    """The query parameter ``name`` (None if absent), with ``clean_str``'s checks."""
    v = request.query_params.get(name)
    return None if v is None else clean_str(v, name, max_chars)
