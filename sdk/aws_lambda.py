"""AWS Lambda adapter: ``handler(client, functions)`` is a Lambda handler function.

It takes API Gateway HTTP API (payload v2) and Lambda function URL events (the same v2
shape) and API Gateway REST API (v1) events. Mangum (``pip install
durable-orchestrator[lambda]``; only this module imports it) turns each event into one
ASGI request (base64 bodies, multi-value headers, cookies, stages) to the ASGI endpoint
(``sdk.asgi.ServeEndpoint``) and its answer back into the response the event's source
expects. It runs the endpoint on one event loop per execution environment, kept between
invocations (so the replay cache and connection pools survive a warm start).
"""

from __future__ import annotations

from collections.abc import Iterable

from mangum import Mangum

from sdk.asgi import ServeEndpoint
from sdk.client import Client
from sdk.function import Runnable


def handler(client: Client, functions: Iterable[Runnable]) -> Mangum:
    """A Lambda handler serving ``functions``: ``handler = aws_lambda.handler(client, FNS)``
    at module level, and ``module.handler`` as the function's handler setting."""
    return Mangum(ServeEndpoint(client, functions), lifespan="off")
