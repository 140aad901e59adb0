"""Schemathesis over the OpenAPI document, against a live orchestrator on each database:
no request may get a 500, and every answer must conform to the document (status code,
content type, body schema). Fixed seed (derandomize), bounded examples (40 per operation,
25 sequences of up to 8 calls along the links): about 20 s per database."""

from __future__ import annotations

from typing import Any

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


# An app's own routes (its budget, its keys) are fuzzed one call at a time above, not in
# sequences: a sequence reaching the test app's id would rotate its signing key, and every
# later call to it (of this run, and of hypothesis's replay of it) would go otherwise.
Workflow = SCHEMA.exclude(path_regex=r"^/api/v1/apps/").as_state_machine()


class _Stateful(Workflow):  # type: ignore[misc,valid-type]
    """Sequences of calls along the document's links (a run's id to get, wait for, cancel
    and replay it; a schedule's to get and delete it; a cron's to delete it)."""

    base_url = ""
    seen: set[tuple[str, int]] = set()  # (operation, status) of every answer checked

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"base_url": self.base_url, "timeout": 70,
                "headers": {"authorization": f"Bearer {procs.API_KEY}"}}

    def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                          **kwargs: Any) -> None:
        _Stateful.seen.add((case.operation.label, response.status_code))
        case.validate_response(response, checks=CHECKS)


def test_api_conforms_along_links(live: Stack) -> None:
    _Stateful.base_url = live.base
    _Stateful.run(settings=settings(max_examples=25, stateful_step_count=8, derandomize=True,
                                    deadline=None, database=None,
                                    phases=[Phase.explicit, Phase.generate],
                                    suppress_health_check=list(HealthCheck)))
    # the links were followed: a run started was then looked at, a schedule deleted
    print(sorted(_Stateful.seen))
    assert ("POST /api/v1/runs", 201) in _Stateful.seen
    assert ("GET /api/v1/runs/{run_id}", 200) in _Stateful.seen
