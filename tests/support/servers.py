"""An app under each app server an adapter runs under, as a ``procs.Proc``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support import procs

LAMBDA_EVENTS = {"lambda-v2": "v2", "lambda-url": "url", "lambda-v1": "v1"}
# each server, and the test app's functions behind the adapter it runs
TEST_APPS = {
    "uvicorn": "tests.apps.testapp:app",
    "waitress-flask": "tests.apps.adapter_apps:flask_app",
    "waitress-wsgi": "tests.apps.adapter_apps:wsgi_app",
    "gunicorn-django": "tests.apps.django_site.wsgi:application",
    **{k: "tests.apps.adapter_apps:lambda_handler" for k in LAMBDA_EVENTS},
}
SERVERS = list(TEST_APPS)
# what tests/e2e/test_adapters.py runs its cases under (the bare WSGI app: tests/unit)
SUITE = [s for s in SERVERS if s != "waitress-wsgi"]


def command(server: str, target: str, port: int) -> list[str]:
    """The command line serving ``target`` ("module:attribute") under ``server`` on
    ``port``."""
    py = sys.executable
    if server == "uvicorn":
        return [py, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning"]
    if server.startswith("waitress"):
        return [py, "-m", "waitress", "--host", "127.0.0.1", f"--port={port}", "--threads=8",
                target]
    if server.startswith("gunicorn"):
        return [py, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--workers", "1",
                "--threads", "8", "--log-level", "warning", target]
    if server in LAMBDA_EVENTS:
        return [py, "-m", "tests.support.lambda_shim", target, "--port", str(port),
                "--event", LAMBDA_EVENTS[server]]
    raise ValueError(f"no app server {server!r}")


def app(tmp: Path, server: str = "uvicorn", extra_env: Mapping[str, str] | None = None,
        target: str | None = None) -> tuple[procs.Proc, str]:
    """``target`` (the test app by default) under ``server``; the process and its
    endpoint's URL (``/api/durable``)."""
    port = procs.free_port()
    args = command(server, target or TEST_APPS[server], port)
    env = {"DURABLE_SIGNING_KEY": procs.SIGNING_KEY, **(extra_env or {})}
    base = f"http://127.0.0.1:{port}"
    return (procs.Proc(args, env, f"{base}/", tmp / f"app-{server}-{port}.log"),
            f"{base}/api/durable")
