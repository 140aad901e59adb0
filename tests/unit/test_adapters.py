"""The WSGI, Flask, Django and Lambda adapters in process: each answers a signed request
with the core's signed answer, refuses what the ASGI endpoint refuses, and ``import sdk``
loads none of the frameworks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
from flask import Flask

from sdk import Client, Context, aws_lambda, task
from sdk import protocol as p
from sdk.flask import blueprint
from sdk.wsgi import environ_headers, serve_wsgi
from tests.support.lambda_shim import FakeContext, event_for, response_of
from tests.support.wsgi_call import wsgi_call

KEY = "unit-signing-key-0123456789"
SIGNER = p.Signer(KEY)


@task("hello")
async def hello(ctx: Context, name: str) -> str:
    return f"hello {name}"


@task("hello-sync")
def hello_sync(ctx: Any, name: str) -> str:
    return f"hi {name}"


FUNCTIONS = [hello, hello_sync]
CLIENT = Client(app_id="unit-app", signing_key=KEY)


def invoke_body(function: str, name: str, call_id: str) -> bytes:
    return p.dumps(p.invoke_request(call_id=call_id, run_id="r1", function=function,
                                    input=name, event=None, memo=[], attempt=0,
                                    budget_ms=10_000))


def check_answer(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert status == 200, body
    SIGNER.verify(body, {k.lower(): v for k, v in headers.items()})
    answer: dict[str, Any] = p.loads(body)
    return answer


def test_import_sdk_loads_no_framework() -> None:
    code = ("import sys, sdk, sdk.wsgi; bad = [m for m in ('flask', 'django', 'mangum', "
            "'werkzeug') if m in sys.modules]; assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_environ_headers() -> None:
    env = {"HTTP_X_DURABLE_SIGNATURE": "s", "CONTENT_LENGTH": "3", "CONTENT_TYPE": "a/b",
           "HTTP_HOST": "h", "PATH_INFO": "/"}
    assert sorted(environ_headers(env)) == [
        ("content-length", "3"), ("content-type", "a/b"), ("host", "h"),
        ("x-durable-signature", "s")]


@pytest.mark.parametrize("function,expected", [("hello", "hello ada"), ("hello-sync", "hi ada")])
def test_wsgi_runs_sync_and_async_functions(function: str, expected: str) -> None:
    app = serve_wsgi(CLIENT, FUNCTIONS)
    body = invoke_body(function, "ada", f"wsgi-{function}")
    answer = check_answer(*wsgi_call(app, "POST", body, SIGNER.sign(body)))
    assert answer["status"] == "complete" and answer["output"] == expected, answer


def test_wsgi_refuses_as_the_asgi_endpoint_does() -> None:
    app = serve_wsgi(CLIENT, FUNCTIONS)
    body = invoke_body("hello", "x", "wsgi-refused")
    assert wsgi_call(app, "POST", body, {})[0] == 401
    assert wsgi_call(app, "PUT", body, SIGNER.sign(body))[0] == 405
    status, _, info = wsgi_call(app, "GET", b"", {})
    assert status == 200 and p.loads(info)["app_id"] == "unit-app"


@pytest.fixture
def flask_client() -> Iterator[Any]:
    app = Flask(__name__)
    app.register_blueprint(blueprint(CLIENT, FUNCTIONS))
    yield app.test_client()


def test_flask_blueprint(flask_client: Any) -> None:
    body = invoke_body("hello-sync", "bo", "flask-1")
    r = flask_client.post("/api/durable", data=body, headers=SIGNER.sign(body))
    assert check_answer(r.status_code, dict(r.headers), r.data)["output"] == "hi bo"
    assert flask_client.post("/api/durable", data=body).status_code == 401


def in_own_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a fresh thread (as Lambda's runtime runs a handler in its own
    process): the event loop Mangum sets there is closed after, not leaked into the
    tests' thread."""
    def run() -> None:
        try:
            fn()
        finally:
            asyncio.get_event_loop().close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


@pytest.mark.parametrize("kind", ["v2", "url", "v1"])
def test_lambda_handler_answers_each_event_shape(kind: str) -> None:
    in_own_thread(lambda: lambda_case(kind))


def lambda_case(kind: str) -> None:
    handler = aws_lambda.handler(CLIENT, FUNCTIONS)
    body = invoke_body("hello", "cy", f"lambda-{kind}")
    headers = [*SIGNER.sign(body).items(), ("content-type", "application/json"),
               ("cookie", "a=1; b=2")]
    event = event_for(kind, "POST", "/api/durable", headers, body)
    status, out_headers, out = response_of(handler(event, FakeContext()))
    assert check_answer(status, dict(out_headers), out)["output"] == "hello cy"
    unsigned = event_for(kind, "POST", "/api/durable", [], body)
    assert response_of(handler(unsigned, FakeContext()))[0] == 401


FORKED = """
import os, signal, sys
from tests.unit.test_adapters import CLIENT, FUNCTIONS, SIGNER, invoke_body, wsgi_call
from sdk.wsgi import serve_wsgi

app = serve_wsgi(CLIENT, FUNCTIONS)

def call(call_id):
    body = invoke_body("hello", "fork", call_id)
    return wsgi_call(app, "POST", body, SIGNER.sign(body))[0]

assert call("before-fork") == 200  # the parent's loop thread is running
pid = os.fork()
if pid == 0:  # the child has no loop thread: the adapter starts its own
    signal.alarm(10)  # (it would wait forever on the parent's loop)
    os._exit(0 if call("in-child") == 200 else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_wsgi_starts_a_new_loop_in_a_forked_worker() -> None:
    # gunicorn --preload imports the app (and may have served nothing) before it forks
    out = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr


def test_wsgi_under_wsgiref_reads_no_further_than_content_length() -> None:
    # wsgiref's wsgi.input is the socket: a read past the body waits for more bytes
    server = make_server("127.0.0.1", 0, serve_wsgi(CLIENT, FUNCTIONS),
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        body = invoke_body("hello", "wsgiref", "wsgiref-1")
        r = httpx.post(url, content=body, headers=SIGNER.sign(body), timeout=5)
        assert check_answer(r.status_code, dict(r.headers), r.content)["output"] == (
            "hello wsgiref")
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
