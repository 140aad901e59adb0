"""Schemathesis over the OpenAPI document, against a live orchestrator on each database:
no request may get a 500, and every answer must conform to the document (status code,
content type, body schema). Fixed seed (derandomize), bounded examples (40 per operation,
40 sequences of up to 8 calls along the links): about 20 s per database."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as oa_checks

from orchestrator.api.openapi import document
from tests.e2e.conftest import Stack
from tests.support import procs

OPENAPI = document()

SCHEMA = schemathesis.openapi.from_dict(OPENAPI)
CHECKS = [checks.not_a_server_error, oa_checks.status_code_conformance,
          oa_checks.content_type_conformance, oa_checks.response_schema_conformance]


def _known_function(body: Any) -> None:
    """Most bodies name a function: use one the test app registers (``echo``), so that the
    rest of the body gets past the 404 for an unknown function and is exercised."""
    if isinstance(body, dict):
        if isinstance(body.get("function"), str):
            body["function"] = "echo"
        for r in body.get("runs", []) if isinstance(body.get("runs"), list) else []:
            _known_function(r)


def _bounded(body: Any) -> None:
    """Keep each call cheap (the runs it starts, cancels or replays), not its shape."""
    if isinstance(body, dict):
        if isinstance(body.get("limit"), int) and not isinstance(body["limit"], bool):
            body["limit"] = min(body["limit"], 20)
        for key in ("inputs", "runs"):
            if isinstance(body.get(key), list):
                del body[key][20:]


@SCHEMA.hook
def map_case(context: Any, case: Any) -> Any:
    if len(repr(case.body)) % 4:  # and 1 in 4 keeps its generated name
        _known_function(case.body)
    _bounded(case.body)
    return case


@pytest.fixture
def live(stack: Stack) -> Stack:
    return stack


@SCHEMA.parametrize()
@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case: Any, live: Stack) -> None:
    case.call_and_validate(base_url=live.base, checks=CHECKS,
                           headers={"authorization": f"Bearer {procs.API_KEY}"}, timeout=70)


Workflow = SCHEMA.as_state_machine()
RunsWorkflow = SCHEMA.include(path_regex="^/api/v1/runs").as_state_machine()


def _restore_apps(base: str) -> None:
    """Undo what a sequence did to the apps (the test app's budget and keys: sequences
    reach its id through the links schemathesis infers from ``GET /apps``): its budget
    back to the default, its key set back to the key the test app holds, alone."""
    with httpx.Client(base_url=f"{base}/api/v1", timeout=30,
                      headers={"authorization": f"Bearer {procs.API_KEY}"}) as http:
        for app in http.get("/apps").json()["apps"]:
            path = f"/apps/{app['id']}"
            if app["budget_ms"] is not None:
                assert http.patch(path, json={"budget_ms": None}).status_code == 200
            if app["own_key"]:  # 409 if it is the primary already
                r = http.post(f"{path}/keys", json={"key": procs.SIGNING_KEY})
                assert r.status_code in (201, 409), r.text
            if app["own_key"] or app["fallback_key"]:
                assert http.delete(f"{path}/keys/fallback").status_code == 204


class _Calls:
    """Sequences of calls along the document's links (a run's id to get, wait for, cancel
    and replay it; a schedule's to get and delete it; a cron's to delete it...)."""

    base_url = ""
    seen: set[tuple[str, int]] = set()  # (operation, status) of every answer checked

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"base_url": self.base_url, "timeout": 70,
                "headers": {"authorization": f"Bearer {procs.API_KEY}"}}

    def teardown(self) -> None:
        _restore_apps(self.base_url)

    def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                          **kwargs: Any) -> None:
        self.seen.add((case.operation.label, response.status_code))
        case.validate_response(response, checks=CHECKS)


class _Stateful(_Calls, Workflow):  # type: ignore[misc,valid-type]
    """Along every link of the document."""

    seen: set[tuple[str, int]] = set()


class _RunsStateful(_Calls, RunsWorkflow):  # type: ignore[misc,valid-type]
    """Along the runs' links only: where a walk of the whole document (its path depends
    on how many operations there are) may not get to them."""

    seen: set[tuple[str, int]] = set()


def _walk(machine: Any, base: str, examples: int) -> None:
    machine.base_url = base
    machine.run(settings=settings(max_examples=examples, stateful_step_count=8,
                                  derandomize=True, deadline=None, database=None,
                                  phases=[Phase.explicit, Phase.generate],
                                  suppress_health_check=list(HealthCheck)))


def test_api_conforms_along_links(live: Stack) -> None:
    _walk(_Stateful, live.base, 40)
    assert len({op for op, _ in _Stateful.seen}) > 10, sorted(_Stateful.seen)
    # the runs' links were followed: a run started was then looked at
    _walk(_RunsStateful, live.base, 15)
    print(sorted(_RunsStateful.seen))
    assert ("POST /api/v1/runs", 201) in _RunsStateful.seen
    assert ("GET /api/v1/runs/{run_id}", 200) in _RunsStateful.seen
