"""The test app under each app server an adapter runs under, as a ``procs.Proc``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support import procs

LAMBDA_EVENTS = {"lambda-v2": "v2", "lambda-url": "url", "lambda-v1": "v1"}
SERVERS = ["uvicorn", "waitress-flask", "gunicorn-django", "waitress-wsgi", *LAMBDA_EVENTS]
# what tests/e2e/test_adapters.py runs its cases under (the bare WSGI app: tests/unit)
SUITE = [s for s in SERVERS if s != "waitress-wsgi"]


def command(server: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line (and extra environment) serving the test app on ``port`` under a
    server other than uvicorn (``procs.app``)."""
    py = sys.executable
    if server in ("waitress-flask", "waitress-wsgi"):
        attr = "flask_app" if server == "waitress-flask" else "wsgi_app"
        return [py, "-m", "waitress", "--host", "127.0.0.1", f"--port={port}", "--threads=8",
                f"tests.apps.adapter_apps:{attr}"], {}
    if server == "gunicorn-django":
        return [py, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--workers", "1",
                "--threads", "8", "--log-level", "warning",
                "tests.apps.django_site.wsgi:application"], {
                    "DJANGO_SETTINGS_MODULE": "tests.apps.django_site.settings"}
    if server in LAMBDA_EVENTS:
        return [py, "-m", "tests.support.lambda_shim", "tests.apps.adapter_apps:lambda_handler",
                "--port", str(port), "--event", LAMBDA_EVENTS[server]], {}
    raise ValueError(f"no app server {server!r}")


def app(tmp: Path, server: str = "uvicorn",
        extra_env: Mapping[str, str] | None = None) -> tuple[procs.Proc, str]:
    """The test app under ``server``; the process and its endpoint's URL."""
    if server == "uvicorn":
        return procs.app(tmp, extra_env=extra_env)
    port = procs.free_port()
    args, env = command(server, port)
    base = f"http://127.0.0.1:{port}"
    env = {"DURABLE_SIGNING_KEY": procs.SIGNING_KEY, **env, **(extra_env or {})}
    return (procs.Proc(args, env, f"{base}/", tmp / f"app-{server}-{port}.log"),
            f"{base}/api/durable")
