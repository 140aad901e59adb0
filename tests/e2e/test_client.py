"""The SDK client against a real orchestrator: registration push, sync wrapper, handles."""

from __future__ import annotations

import pytest

from sdk import Client, InputValidationError, OrchestratorError, RunFailedError
from tests.apps.testapp import typed
from tests.e2e.conftest import Stack


async def test_app_pushes_its_own_registration(client: Client, stack: Stack) -> None:
    app = await client.register(stack.app_url)
    assert app["id"] == "testapp" and app["url"] == stack.app_url
    assert {"chain", "fan-out", "waiter"} <= {f["name"] for f in app["functions"]}


async def test_registering_a_url_that_is_not_an_app_is_refused(stack: Stack) -> None:
    # the introspection request gets no signed answer (here a 404): a clear 422
    async with stack.rest() as rest:
        r = await rest.post("/apps", json={"url": stack.app_url + "-missing"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "url"


def test_sync_wrapper(stack: Stack) -> None:
    with stack.client().sync as client:
        assert client.run("double", 21, timeout=20) == 42
        run_id = client.run_no_wait("chain", 4)
        assert client.result(run_id, timeout=20) == 6
        assert client.get_run(run_id)["status"] == "completed"
        sent = client.send_event("test.trigger", {"via": "sync"})
        [[triggered]] = sent["runs"]
        assert client.result(triggered, timeout=20)["data"] == {"via": "sync"}


async def test_handles_and_typed_errors(client: Client) -> None:
    h = await client.run_no_wait("double", 5)
    assert await h.result(timeout=20) == 10
    assert (await h.get())["output"] == 10
    with pytest.raises(OrchestratorError) as ei:
        await client.run_no_wait("no-such-function")
    assert ei.value.status == 404
    with pytest.raises(InputValidationError):  # checked before anything is sent
        await client.run_no_wait(typed, {"name": "x"})
    assert await client.run(typed, {"name": "x", "count": 1}, timeout=20) == "x x1"
    with pytest.raises(RunFailedError):
        await client.run("always-fails", timeout=20)
    with pytest.raises(TimeoutError):
        await client.run("sleeper", 5, timeout=0.5)
