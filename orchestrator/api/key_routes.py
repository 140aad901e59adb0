"""REST endpoints for API keys (``admin`` only: the route table says so)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.api.bodies import CreateKey
from orchestrator.api.responses import JSON, engine_of, path_id, read_body


async def create_key(request: Request) -> JSON:
    body = await read_body(request, CreateKey)
    return JSON(await engine_of(request).create_key(body.name, body.scopes), status_code=201)


async def list_keys(request: Request) -> JSON:
    return JSON({"keys": await engine_of(request).list_keys()})


async def revoke_key(request: Request) -> Response:
    await engine_of(request).revoke_key(path_id(request, "key_id"))
    return Response(status_code=204)


ROUTES = [
    Route("/api/v1/keys", create_key, methods=["POST"]),
    Route("/api/v1/keys", list_keys, methods=["GET"]),
    Route("/api/v1/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
