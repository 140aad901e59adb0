"""Webhooks: managing sources (``/api/v1/webhooks``, with the API key) and taking their
deliveries (``POST /hooks/{source_id}``, outside ``/api/``: a delivery is authenticated by
its provider's signature, ``engine/webhooks.py``)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.api.bodies import CreateWebhook, RotateWebhookSecret, WebhookIdRule
from orchestrator.api.responses import JSON, engine_of, path_id, read_body, read_bytes
from orchestrator.engine.engine import SourceSpec
from orchestrator.engine.webhooks import MAX_DELIVERY_BYTES, Rule, Signature
from orchestrator.errors import ApiError

log = logging.getLogger("orchestrator.webhooks")


def _id_rule(r: WebhookIdRule | None) -> Rule | None:
    return None if r is None else Rule(r.source, r.key)


async def create_webhook(request: Request) -> JSON:
    body = await read_body(request, CreateWebhook)
    sig = body.signature
    spec = SourceSpec(
        body.kind, body.secret,
        None if body.event is None else Rule(body.event.source, body.event.key,
                                             body.event.prefix),
        _id_rule(body.delivery_id),
        Signature(sig.header, sig.algorithm, sig.encoding, sig.prefix), body.tolerance)
    return JSON(await engine_of(request).create_webhook(spec), status_code=201)


async def list_webhooks(request: Request) -> JSON:
    return JSON({"webhooks": await engine_of(request).list_webhooks()})


async def get_webhook(request: Request) -> JSON:
    return JSON(await engine_of(request).get_webhook(path_id(request, "source_id")))


async def rotate_webhook(request: Request) -> JSON:
    body = await read_body(request, RotateWebhookSecret, empty_ok=True)
    return JSON(await engine_of(request).rotate_webhook(
        path_id(request, "source_id"), body.secret, body.grace_seconds))


async def delete_webhook(request: Request) -> Response:
    await engine_of(request).delete_webhook(path_id(request, "source_id"))
    return Response(status_code=204)


async def deliver(request: Request) -> JSON:
    """A provider's delivery: 200 once it is stored as an event (its runs start later)."""
    source_id = path_id(request, "source_id")
    try:
        raw = await read_bytes(request, min(MAX_DELIVERY_BYTES,
                                            engine_of(request).settings.max_body_bytes))
    except ApiError as exc:
        log.warning("webhook source %s: refused a delivery (%d): %s", source_id,
                    exc.status, exc.message)
        raise
    headers = {k.lower(): v for k, v in request.headers.items()}
    return JSON(await engine_of(request).deliver_webhook(
        source_id, headers, request.headers.get("content-type", ""), bytes(raw)))


ROUTES = [
    Route("/api/v1/webhooks", create_webhook, methods=["POST"]),
    Route("/api/v1/webhooks", list_webhooks, methods=["GET"]),
    Route("/api/v1/webhooks/{source_id}", get_webhook, methods=["GET"]),
    Route("/api/v1/webhooks/{source_id}", delete_webhook, methods=["DELETE"]),
    Route("/api/v1/webhooks/{source_id}/secret", rotate_webhook, methods=["POST"]),
    Route("/hooks/{source_id}", deliver, methods=["POST"]),
]
