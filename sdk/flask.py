"""Flask adapter: ``blueprint(client, functions)`` serves the endpoint in a Flask app;
``cloud_function(client, functions)`` is a Google Cloud Run function (Cloud Run
functions call their entry point with a Flask request).

Flask is not an SDK dependency (``pip install durable-orchestrator[flask]``); only this
module imports it. Requests are answered by ``sdk.wsgi.SyncEndpoint`` (the ASGI endpoint
on the adapter's own event loop), so task bodies may be sync or async.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Blueprint, Request, Response, request

from sdk.client import Client
from sdk.function import Runnable
from sdk.wsgi import SyncEndpoint


def answer(endpoint: SyncEndpoint, req: Request) -> Response:
    """Answer the Flask request ``req`` with ``endpoint``."""
    resp = endpoint.respond(req.method, req.headers.items(), req.stream.read)
    return Response(resp.body, status=resp.status, headers=resp.headers)


def blueprint(client: Client, functions: Iterable[Runnable], *,
              url_prefix: str = "/api/durable", name: str = "durable") -> Blueprint:
    """A blueprint answering GET and POST at ``url_prefix``:
    ``app.register_blueprint(blueprint(client, FUNCTIONS))``."""
    endpoint = SyncEndpoint(client, functions)
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    def durable() -> Response:
        return answer(endpoint, request)

    bp.add_url_rule("", "endpoint", durable, methods=["GET", "POST"])
    return bp


def cloud_function(client: Client, functions: Iterable[Runnable]
                   ) -> Callable[[Request], Response]:
    """An HTTP function for Google Cloud Run functions (functions-framework):
    ``durable = cloud_function(client, FUNCTIONS)``, deployed with ``--entry-point durable``."""
    endpoint = SyncEndpoint(client, functions)

    def durable(req: Request) -> Response:
        return answer(endpoint, req)

    return durable
