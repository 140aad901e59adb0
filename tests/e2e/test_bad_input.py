"""Bad input gets a clear 4xx naming the field, leaves no row behind and breaks no later
request (issue 8, section 2); a 500 tells only "internal error" and a request id."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import asyncpg
import httpx

from tests.e2e.conftest import Stack

HUGE_AT = ["1e20", "-1e20", "1e300", "Infinity", "NaN", "1e400", "-Infinity"]


def refused(r: httpx.Response, field: str, status: int = 422) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["field"] == field, err
    assert "x-request-id" in r.headers


async def _post_raw(rest: httpx.AsyncClient, path: str, raw: str) -> httpx.Response:
    return await rest.post(path, content=raw.encode("utf-8", "surrogatepass"),
                           headers={"content-type": "application/json"})


async def _healthy(rest: httpx.AsyncClient) -> None:
    """The routes broken inputs used to poison still answer."""
    for path in ("/schedules", "/crons", "/runs", "/apps", "/functions"):
        r = await rest.get(path)
        assert r.status_code == 200, (path, r.text)


async def test_schedule_at_out_of_range_is_422_and_stores_nothing(
        rest: httpx.AsyncClient) -> None:
    before = (await rest.get("/schedules")).json()["schedules"]
    for at in HUGE_AT:
        r = await _post_raw(rest, "/schedules", f'{{"function": "echo", "at": {at}}}')
        assert r.status_code == 422, (at, r.text)
        assert r.json()["error"]["field"] in ("at", "body"), (at, r.text)
    for at in ("0001-01-01T00:00:00+14:00", 10**400):
        refused(await rest.post("/schedules", json={"function": "echo", "at": at}), "at")
    await _healthy(rest)
    assert (await rest.get("/schedules")).json()["schedules"] == before


async def test_deep_json_is_422(rest: httpx.AsyncClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/runs", "/events", "/schedules", "/crons", "/runs/bulk", "/runs/cancel",
                 "/runs/replay", "/apps"):
        refused(await _post_raw(rest, path, deep), "body")
    data = "{}"
    for _ in range(5000):
        data = '{"a":' + data + "}"
    refused(await _post_raw(rest, "/events", f'{{"name": "deep", "data": {data}}}'), "body")
    # deeper than MAX_JSON_DEPTH (64) but parseable: named by its field
    data = '{"a": 1}'
    for _ in range(64):  # 65 levels: one too many
        data = '{"a":' + data + "}"
    refused(await _post_raw(rest, "/events", f'{{"name": "deep", "data": {data}}}'),
            "body.data")
    refused(await _post_raw(rest, "/runs", f'{{"function": "echo", "input": {data}}}'),
            "input")
    await _healthy(rest)


async def test_non_json_values_are_422_on_every_route(rest: httpx.AsyncClient) -> None:
    for value in ('"\\udc00"', "NaN", "Infinity", "-Infinity", "1e400"):
        r = await _post_raw(rest, "/events", f'{{"name": "bad.value", "data": {{"x": {value}}}}}')
        assert r.status_code == 422, (value, r.text)
        assert r.json()["error"]["field"] in ("body", "body.data"), r.text
        for path, body in (("/runs", '{"function": "echo", "input": %s}'),
                           ("/runs/bulk", '{"function": "echo", "inputs": [%s]}'),
                           ("/crons", '{"function": "echo", "expression": "0 0 * * *",'
                                      ' "input": %s}')):
            r = await _post_raw(rest, path, body % value)
            assert r.status_code == 422, (path, value, r.text)
    events = (await rest.get("/runs", params={"function": "echo"})).json()
    assert all(r["status"] for r in events["runs"])
    assert (await rest.get("/crons")).json()["crons"] == []
    await _healthy(rest)


async def test_nul_and_huge_strings_are_4xx(rest: httpx.AsyncClient) -> None:
    refused(await rest.post("/events", json={"name": "x", "id": "a\x00b"}), "body.id")
    refused(await rest.post("/events", json={"name": "x", "id": "e" * 1000}), "body.id")
    refused(await rest.post("/runs", json={"function": "echo", "idempotency_key": "k\x00"}),
            "idempotency_key")
    refused(await rest.post("/runs", json={"function": "echo",
                                           "idempotency_key": "k" * 1_000_000}),
            "idempotency_key")
    refused(await rest.post("/runs/bulk", json={"runs": [
        {"function": "echo", "idempotency_key": "k" * 1000}]}), "runs[0].idempotency_key")
    refused(await rest.get("/runs", params={"function": "a\x00"}), "function")
    refused(await rest.get("/runs", params={"cursor": "a\x00"}), "cursor", 400)
    refused(await rest.get("/schedules", params={"function": "a\x00"}), "function")
    refused(await rest.get("/crons", params={"function": "a\x00"}), "function")
    refused(await rest.post("/runs/cancel", json={"function": "a\x00"}), "function")
    for path in ("/runs/a%00b", "/runs/a%00b/wait", "/schedules/a%00b", "/runs/" + "r" * 5000):
        refused(await rest.get(path), "id", 404)
    for path in ("/schedules/a%00b", "/crons/a%00b"):
        refused(await rest.delete(path), "id", 404)
    refused(await rest.post("/runs/a%00b/cancel"), "id", 404)
    refused(await rest.post("/runs/a%00b/replay"), "id", 404)
    refused(await rest.post("/crons", json={"function": "echo", "expression": "0 0 * * *",
                                            "timezone": "UTC\x00"}), "timezone")
    refused(await rest.post("/runs/cancel", json={"function": "echo", "reason": "r\x00"}),
            "reason")
    # NUL inside a JSON value is fine: it is stored escaped
    r = await rest.post("/runs", json={"function": "echo", "input": {"s": "a\x00b"}})
    assert r.status_code == 201, r.text
    assert (await rest.get(f"/runs/{r.json()['id']}")).json()["input"] == {"s": "a\x00b"}
    r = await rest.post("/events", json={"name": "nul.data", "data": {"s": "a\x00b"}})
    assert r.status_code == 202, r.text
    await _healthy(rest)


async def test_other_bad_input(rest: httpx.AsyncClient) -> None:
    refused(await rest.post("/apps", json={"url": "http://[::1"}), "url")
    refused(await rest.post("/apps", json={"url": "http://x:99999/"}), "url")
    refused(await rest.get("/runs", params={"cursor": "\x00\xff"}), "cursor", 400)
    refused(await rest.get("/runs", params={"cursor": "not-a-cursor"}), "cursor", 400)
    for path in ("/runs/cancel", "/runs/replay"):
        refused(await rest.post(path, json={"function": ""}), "function")
    r = await rest.post("/crons", json={"function": "echo", "expression": "0 0 30 2 *"})
    refused(r, "expression")
    assert "never" in r.json()["error"]["message"]
    assert (await rest.get("/crons")).json()["crons"] == []
    big = "x" * (2 * 1024 * 1024)
    refused(await rest.post("/runs", json={"function": "echo", "input": big}), "input")
    refused(await rest.post("/runs/bulk", json={"runs": [{"function": "echo", "input": big}]}),
            "runs[0].input")
    await _healthy(rest)


async def test_repeated_event_id_is_marked_duplicate(rest: httpx.AsyncClient) -> None:
    eid = f"dup-{time.time_ns()}"
    r = await rest.post("/events", json=[{"name": "noone.listens", "id": eid},
                                         {"name": "noone.listens", "id": eid},
                                         {"name": "noone.listens"}])
    assert r.status_code == 202, r.text
    assert r.json()["duplicate"] == [False, True, False]
    r = await rest.post("/events", json={"name": "noone.listens", "id": eid})
    body: dict[str, Any] = r.json()
    assert body["ids"] == [eid] and body["duplicate"] == [True] and body["runs"] == [[]]


async def test_post_runs_wait_answers_the_run_as_get_does(rest: httpx.AsyncClient) -> None:
    r = await rest.post("/runs", params={"wait": 20}, json={"function": "echo",
                                                           "input": {"k": 1}})
    assert r.status_code == 201, r.text
    waited = r.json()
    assert waited["status"] == "completed", waited
    got = (await rest.get(f"/runs/{waited['id']}")).json()
    assert set(waited) == set(got)
    assert waited["input"] == {"k": 1} and "steps" in waited
    assert set((await rest.get(f"/runs/{waited['id']}/wait")).json()) == set(got)


async def test_a_schedule_stored_before_the_check_can_be_listed_and_deleted(
        stack: Stack, rest: httpx.AsyncClient) -> None:
    """A row with an out-of-range ``at`` that an older version stored does not break
    ``GET /schedules``, and can be deleted through the API."""
    url = stack.orch.args[stack.orch.args.index("--database-url") + 1]
    insert = ("INSERT INTO schedules (id, function, input_json, at, run_id, created_at) "
              "VALUES ('poisoned', 'echo', 'null', 1e300, NULL, 0)")
    if url.startswith("sqlite"):
        with sqlite3.connect(stack.tmp / "orchestrator.db") as conn:
            conn.execute(insert)
    else:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(insert)
        finally:
            await conn.close()
    r = await rest.get("/schedules")
    assert r.status_code == 200, r.text
    assert [s["at"] for s in r.json()["schedules"] if s["id"] == "poisoned"] == [None]
    assert (await rest.delete("/schedules/poisoned")).status_code == 204
    assert (await rest.get("/schedules/poisoned")).status_code == 404


async def test_runs_list_and_counts_time_range_and_event_id_are_4xx(
        rest: httpx.AsyncClient) -> None:
    bad_times = ["yesterday", "", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "1e400",
                 "-1e20", "NaN", "Infinity", "0000-01-01T00:00:00Z"]
    for path in ("/runs", "/runs/counts"):
        for name in ("since", "until"):
            for value in bad_times:
                r = await rest.get(path, params={name: value})
                refused(r, name)
                assert name in r.json()["error"]["message"], (path, value, r.text)
        refused(await rest.get(path, params={"function": "a\x00"}), "function")
    refused(await rest.get("/runs", params={"event_id": "a\x00b"}), "event_id")
    refused(await rest.get("/runs", params={"event_id": "e" * 1000}), "event_id")
    refused(await rest.get("/runs", params={"event_id": "no-such-event"}), "event_id", 404)
    # "counts" is not taken for a run id (GET /runs/{run_id} would answer 404)
    r = await rest.get("/runs/counts")
    assert r.status_code == 200 and "total" in r.json(), r.text
    await _healthy(rest)
