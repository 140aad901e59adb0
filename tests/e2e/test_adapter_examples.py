"""The examples of the README's "Deploying" section run: the Flask app under waitress,
the Django project under gunicorn, the Lambda handler behind function-URL events; each
registers with an orchestrator and runs a sync function with a step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sdk import Client
from tests.support import procs, servers

EXAMPLES = {
    "waitress-flask": "examples.functions.flask_app:app",
    "gunicorn-django": "examples.functions.django_app.wsgi:application",
    "lambda-url": "examples.functions.lambda_handler:handler",
}
AUTH = {"authorization": f"Bearer {procs.API_KEY}"}


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    orch, base = procs.orchestrator(tmp_path_factory.mktemp("orchestrator"))
    orch.start()
    try:
        yield base
    finally:
        orch.stop()


@pytest.mark.parametrize("server", list(EXAMPLES))
def test_example_registers_and_runs(server: str, orchestrator: str, tmp_path: Path) -> None:
    app, app_url = servers.app(tmp_path, server, target=EXAMPLES[server])
    app.start()
    try:
        r = httpx.post(f"{orchestrator}/api/v1/apps", json={"url": app_url}, headers=AUTH,
                       timeout=10)
        assert r.status_code == 200, (r.text, app.log())
        assert r.json()["id"] == "orders-app"
        fns = httpx.get(f"{orchestrator}/api/v1/functions", headers=AUTH).json()["functions"]
        assert {"fulfil-order", "send-notification"} <= {f["name"] for f in fns}
        client = Client(orchestrator_url=orchestrator, api_key=procs.API_KEY)
        with client.sync as sync:
            out = sync.run("send-notification", {"to": "ada@example.com"}, timeout=20)
        assert out == {"to": "ada@example.com", "channel": "email"}, app.log()
    finally:
        app.stop()
