"""A stand-in for API Gateway / a Lambda function URL on loopback, for tests and benches.

``python -m tests.support.lambda_shim MODULE:HANDLER --port N --event v2|url|v1`` imports
the handler (as Lambda's runtime does, once per execution environment) and turns every
HTTP request into the event JSON the chosen source sends, then the handler's result back
into an HTTP response:

- ``v2``: API Gateway HTTP API, payload format 2.0 (``routeKey``, comma-joined headers,
  ``cookies`` split out, a text body);
- ``url``: a Lambda function URL (the 2.0 shape, ``routeKey`` ``$default``, the body
  base64-encoded, as function URLs send any body they do not know to be text);
- ``v1``: API Gateway REST API (``resource``, ``httpMethod``, ``headers`` and
  ``multiValueHeaders``, ``requestContext.stage``, ``isBase64Encoded``).

The event goes through ``json.dumps``/``json.loads`` first, as it does in Lambda.
AWS's runtime interface client (awslambdaric) needs the Lambda Runtime API to poll, which
only AWS or its emulator (not on PyPI) provides, hence this shim.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Event = dict[str, Any]
LambdaHandler = Callable[[Event, Any], dict[str, Any]]


class FakeContext:
    """The attributes of Lambda's context object a handler may read."""

    function_name = "durable-app"
    memory_limit_in_mb = 512
    aws_request_id = ""

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _headers(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for k, v in pairs:
        multi.setdefault(k.lower(), []).append(v)
    for k, vs in multi.items():
        single[k] = ",".join(vs)
    return single, multi


def event_for(kind: str, method: str, target: str, pairs: list[tuple[str, str]],
              body: bytes) -> Event:
    """The event ``kind`` ("v2", "url" or "v1") for one HTTP request."""
    url = urlsplit(target)
    single, multi = _headers([(k, v) for k, v in pairs if k.lower() != "cookie"])
    cookies = [c.strip() for k, v in pairs if k.lower() == "cookie" for c in v.split(";")]
    b64 = kind == "url"
    text = base64.b64encode(body).decode() if b64 else body.decode("utf-8")
    now = int(time.time() * 1000)
    if kind == "v1":
        if cookies:
            multi["cookie"] = ["; ".join(cookies)]
            single["cookie"] = multi["cookie"][0]
        return {
            "resource": "/{proxy+}", "path": f"/prod{url.path}", "httpMethod": method,
            "headers": single, "multiValueHeaders": multi,
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": {"proxy": url.path.lstrip("/")}, "stageVariables": None,
            "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method,
                               "path": f"/prod{url.path}", "stage": "prod",
                               "requestId": str(uuid.uuid4()), "requestTimeEpoch": now,
                               "identity": {"sourceIp": "127.0.0.1"}},
            "body": text or None, "isBase64Encoded": b64,
        }
    domain = ("abc123.lambda-url.eu-west-1.on.aws" if kind == "url"
              else "abc123.execute-api.eu-west-1.amazonaws.com")
    ev: Event = {
        "version": "2.0", "routeKey": "$default" if kind == "url" else f"{method} {url.path}",
        "rawPath": url.path, "rawQueryString": url.query, "headers": single,
        "requestContext": {"domainName": domain, "stage": "$default", "timeEpoch": now,
                           "requestId": str(uuid.uuid4()),
                           "http": {"method": method, "path": url.path,
                                    "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                    "userAgent": single.get("user-agent", "")}},
        "isBase64Encoded": b64,
    }
    if cookies:
        ev["cookies"] = cookies
    if body:
        ev["body"] = text
    return ev


def response_of(result: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a handler's result (either payload format)."""
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for k, vs in (result.get("multiValueHeaders") or {}).items():
        headers += [(k, str(v)) for v in vs if (k, str(v)) not in headers]
    headers += [("set-cookie", c) for c in result.get("cookies") or []]
    return int(result["statusCode"]), headers, body


class Invoker:
    """Runs invocations one at a time on the thread that calls ``run_forever`` (the main
    thread, as Lambda's runtime does: Mangum's event loop belongs to it)."""

    def __init__(self, handler: LambdaHandler) -> None:
        self.handler = handler
        self._queue: queue.Queue[tuple[Event, Future[dict[str, Any]]]] = queue.Queue()

    def invoke(self, event: Event) -> dict[str, Any]:
        done: Future[dict[str, Any]] = Future()
        self._queue.put((event, done))
        return done.result()

    def run_forever(self) -> None:
        while True:
            event, done = self._queue.get()
            try:
                done.set_result(self.handler(event, FakeContext()))
            except BaseException as exc:
                done.set_exception(exc)


def make_server(invoker: Invoker, kind: str, port: int) -> ThreadingHTTPServer:
    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _invoke(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            event = json.loads(json.dumps(
                event_for(kind, self.command, self.path, list(self.headers.items()), body)))
            result = invoker.invoke(event)
            status, headers, out = response_of(json.loads(json.dumps(result)))
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ("content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = _invoke

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Gateway)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("handler", help="module:attribute")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--event", choices=["v2", "url", "v1"], default="url")
    args = ap.parse_args()
    module, attr = args.handler.split(":")
    handler = getattr(importlib.import_module(module), attr)
    invoker = Invoker(handler)
    server = make_server(invoker, args.event, args.port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    invoker.run_forever()


if __name__ == "__main__":
    main()
