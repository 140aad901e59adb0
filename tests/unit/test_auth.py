"""The auth middleware finds the route table's operation of every request (the one place
that reads each route's scope)."""

from __future__ import annotations

import re

from orchestrator.api.auth import OPS
from orchestrator.api.route_table import OPERATIONS


def test_every_operation_is_found_from_a_concrete_path() -> None:
    for op in OPERATIONS:
        path = re.sub(r"\{[^}]+\}", "some-id", op.path)
        assert OPS.of(op.method.upper(), path) is op, op.operation_id


def test_head_is_get_and_unknown_requests_have_no_operation() -> None:
    assert OPS.of("HEAD", "/api/v1/runs") is OPS.of("GET", "/api/v1/runs")
    assert OPS.of("GET", "/api/v1/nope") is None
    assert OPS.of("PUT", "/api/v1/runs") is None
    assert OPS.of("GET", "/api/v1/runs/a/b/c") is None
    assert OPS.of("POST", "/api/v1/runs/some-id/cancel") is not None
    assert OPS.of("POST", "/api/v1/runs/a/b/cancel") is None
