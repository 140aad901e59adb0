"""JSON responses and request-body parsing with clear 4xx errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.engine.engine import Engine
from orchestrator.errors import ApiError, Invalid, TooLarge


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(err: ApiError) -> JSON:
    return JSON(err.body(), status_code=err.status)


async def read_body(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object (``{}`` for no body when ``empty_ok``), size-limited."""
    if empty_ok and request.headers.get("content-length") in (None, "0"):
        return {}
    return want_object(await read_json(request, engine_of(request).settings.max_body_bytes))


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"request body exceeds {limit} bytes")
    if not body:
        raise Invalid("request body is empty; send JSON", "body")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"request body is not valid JSON: {exc}", "body") from None


def want_object(value: Any, where: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid("expected a JSON object", where)
    return value


def want_str(obj: dict[str, Any], key: str, *, required: bool = True,
             where: str | None = None) -> str | None:
    v = obj.get(key)
    name = where or key
    if v is None:
        if required:
            raise Invalid(f"'{name}' is required", name)
        return None
    if not isinstance(v, str) or not v:
        raise Invalid(f"'{name}' must be a non-empty string", name)
    return v
