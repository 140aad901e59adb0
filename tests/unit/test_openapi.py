"""The OpenAPI document matches the app's routes, is self-consistent, and shows the limits
the validators use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from orchestrator.api import bodies, fields, route_table
from orchestrator.api.openapi import document
from orchestrator.api.route_table import OPERATIONS
from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.engine import views
from orchestrator.engine.engine import MAX_BULK
from sdk import protocol as p

OPENAPI = document()

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    return create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db", api_keys=["k"],
                               signing_key="s"))


def _routes(app: Starlette) -> set[tuple[str, str]]:
    out = set()
    for r in app.routes:
        assert isinstance(r, Route), r
        for m in r.methods or {"GET"}:
            if m != "HEAD":
                out.add((r.path, m.lower()))
    return out


def _documented() -> set[tuple[str, str]]:
    return {(path, m) for path, item in OPENAPI["paths"].items() for m in item if m in METHODS}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                assert isinstance(v, str)
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in OPENAPI["paths"].items():
        for m, op in item.items():
            if m in METHODS:
                yield path, m, op


def test_every_api_route_is_documented(app: Starlette) -> None:
    api = {(path, m) for path, m in _routes(app) if path.startswith("/api/v1")}
    missing = sorted(api - _documented())
    assert not missing, f"routes missing from OPENAPI['paths']: {missing}"


def test_every_route_of_the_app_is_in_the_route_table(app: Starlette) -> None:
    table = {(op.path, op.method) for op in OPERATIONS}
    assert len(table) == len(OPERATIONS)
    assert _routes(app) == table


def test_every_documented_operation_exists(app: Starlette) -> None:
    extra = sorted(_documented() - _routes(app))
    assert not extra, f"documented but not routed: {extra}"


def test_every_ref_resolves_to_a_component_schema() -> None:
    schemas = OPENAPI["components"]["schemas"]
    refs = set(_refs(OPENAPI))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_every_component_schema_is_used() -> None:
    used = {r.removeprefix("#/components/schemas/") for r in _refs(OPENAPI)}
    unused = sorted(set(OPENAPI["components"]["schemas"]) - used)
    assert not unused, unused


def test_the_document_is_json() -> None:
    text = json.dumps(OPENAPI, allow_nan=False)
    assert json.loads(text) == OPENAPI
    assert OPENAPI["openapi"].startswith("3.1")


def test_operations_are_well_formed() -> None:
    ids = []
    for path, method, op in _operations():
        where = f"{method.upper()} {path}"
        ids.append(op["operationId"])
        assert op.get("summary"), where
        assert op["responses"], where
        for code in op["responses"]:
            assert re.fullmatch(r"[1-5]\d\d", code), (where, code)
        # every path template variable has a required path parameter, and no other
        declared = {q["name"] for q in op.get("parameters", []) if q["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), where
        for q in op.get("parameters", []):
            assert q["in"] in ("path", "query"), where
            assert q["in"] != "path" or q["required"] is True, where
        secured = op.get("security", OPENAPI["security"]) != []
        # a 401 is the API key's, except a webhook delivery's (its signature's)
        assert secured == ("401" in op["responses"]) or path.startswith("/hooks/"), where
        if "requestBody" in op:
            assert "413" in op["responses"] and "422" in op["responses"], where
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def _op(path: str, method: str) -> dict[str, Any]:
    return OPENAPI["paths"][path][method]  # type: ignore[no-any-return]


def _status_codes(path: str, method: str) -> set[str]:
    return set(_op(path, method)["responses"])


def test_success_status_codes() -> None:
    creates = [("/api/v1/runs", "post"), ("/api/v1/runs/bulk", "post"),
               ("/api/v1/schedules", "post"), ("/api/v1/crons", "post")]
    for path, method in creates:
        assert "201" in _status_codes(path, method), path
    for path in ("/api/v1/schedules/{sid}", "/api/v1/crons/{cid}"):
        assert "204" in _status_codes(path, "delete"), path
        assert "409" in _status_codes(path, "delete"), path
    assert "202" in _status_codes("/api/v1/events", "post")
    for path in ("/api/v1/runs/{run_id}/cancel", "/api/v1/runs/{run_id}/replay"):
        assert {"200", "404", "409"} <= _status_codes(path, "post"), path
    assert "409" in _status_codes("/api/v1/apps", "post")


def test_run_statuses_and_fields() -> None:
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["RunStatus"]["enum"] == [s.value for s in p.RunStatus]
    assert set(schemas["RunStatus"]["enum"]) >= {
        "queued", "running", "completed", "failed", "cancelled", "timed_out", "skipped"}
    detail = schemas["Run"]["properties"]
    assert {"parents", "failure", "history", "steps", "children"} <= set(detail)
    assert "task" in schemas["RunSummary"]["properties"]


def test_query_parameters() -> None:
    def names(path: str, method: str) -> set[str]:
        return {q["name"] for q in _op(path, method).get("parameters", [])
                if q["in"] == "query"}

    assert "wait" in names("/api/v1/runs", "post")
    assert "timeout" in names("/api/v1/runs/{run_id}/wait", "get")
    assert {"function", "status", "limit", "cursor"} <= names("/api/v1/runs", "get")


def test_request_bodies_name_their_fields() -> None:
    s = OPENAPI["components"]["schemas"]
    assert set(s["CancelRuns"]["properties"]) == {"function", "status", "since", "until",
                                                  "limit", "reason"}
    assert set(s["ReplayRuns"]["properties"]) == {"function", "status", "since", "until",
                                                  "limit", "from"}
    assert s["ReplayRun"]["properties"]["from"]["enum"] == ["failed_step", "start"]
    bulk = _op("/api/v1/runs/bulk", "post")["requestBody"]["content"]["application/json"]
    assert [set(s[r["$ref"].rsplit("/", 1)[1]]["properties"])
            for r in bulk["schema"]["oneOf"]] == [{"function", "inputs", "priority"}, {"runs"}]
    assert set(s["CreateRun"]["properties"]) == {"function", "input", "idempotency_key",
                                                 "priority"}
    assert s["CreateSchedule"]["required"] == ["function", "at"]
    assert set(s["CreateCron"]["properties"]) == {"function", "expression", "timezone",
                                                  "input"}


def test_the_limits_the_validators_use_are_in_the_schemas() -> None:
    s = OPENAPI["components"]["schemas"]
    create = s["CreateRun"]["properties"]
    assert create["function"]["maxLength"] == fields.MAX_STR_CHARS
    assert create["idempotency_key"]["anyOf"][0]["maxLength"] == fields.MAX_KEY_CHARS
    event = s["Event"]["properties"]
    assert event["name"]["pattern"] == p.EVENT_NAME_RE.pattern
    assert event["id"]["anyOf"][0]["maxLength"] == fields.MAX_ID_CHARS
    assert (event["ts"]["minimum"], event["ts"]["maximum"]) == (fields.MIN_EPOCH,
                                                               fields.MAX_EPOCH)
    events = _op("/api/v1/events", "post")["requestBody"]["content"]["application/json"]
    assert events["schema"]["oneOf"][1]["maxItems"] == bodies.MAX_EVENTS_PER_REQUEST
    assert s["BulkRunList"]["properties"]["runs"]["maxItems"] == MAX_BULK
    assert s["BulkInputs"]["properties"]["inputs"]["maxItems"] == MAX_BULK
    assert s["CancelRuns"]["properties"]["limit"]["maximum"] == fields.MAX_FILTER_LIMIT
    limit = {q["name"]: q for q in _op("/api/v1/runs", "get")["parameters"]}["limit"]
    assert limit["schema"]["maximum"] == route_table.MAX_PAGE
    assert s["Task"]["properties"]["status"]["anyOf"][1]["const"] == views.NOT_STARTED


def test_request_bodies_refuse_fields_they_do_not_name() -> None:
    s = OPENAPI["components"]["schemas"]
    for name in ("CreateRun", "BulkInputs", "BulkRunList", "CancelRun", "CancelRuns",
                 "ReplayRun", "ReplayRuns", "CreateSchedule", "CreateCron"):
        assert s[name]["additionalProperties"] is False, name
    for name in ("Event", "RegisterApp"):  # fields they do not name are ignored
        assert "additionalProperties" not in s[name], name


def test_every_operation_declares_its_scope_and_the_document_shows_it() -> None:
    for op in OPERATIONS:
        doc = OPENAPI["paths"][op.path][op.method]
        if op.public:
            assert op.needs is None and doc["security"] == [] and "x-scopes" not in doc
            continue
        want = op.scope or ("read" if op.method == "get" else "admin")
        assert op.needs == want, op.operation_id
        assert doc["x-scopes"] == [want] and doc["security"] == [{"bearer": [want]}]
        assert f"`{want}`" in doc["description"] and "403" in doc["responses"]
    needs = {op.operation_id: op.needs for op in OPERATIONS}
    assert needs["sendEvents"] == "events" and needs["listRuns"] == "read"
    assert needs["listKeys"] == needs["createKey"] == needs["revokeKey"] == "admin"
