"""API keys and scopes against a live orchestrator: every operation of the generated
OpenAPI document is called with an admin key (the settings' key), an ``events`` key, a
``read`` key and no key; the answer is 403 exactly where the key's scope lacks what the
operation declares, 401 without a key, and otherwise neither (nor a 5xx). Keys are made,
listed and revoked through REST and the CLI; a revoked key fails at once; no key shows in
a list answer or in the orchestrator's log."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from orchestrator.api.openapi import document
from tests.e2e.conftest import Stack
from tests.support import procs

OPENAPI = document()
METHODS = {"get", "post", "delete"}


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in OPENAPI["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def concrete(path: str) -> str:
    """The path with every parameter an id nothing has (404 where the key may call it)."""
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + "no-such-id" + out[end + 1:]
    return out


def allowed(scopes: set[str], op: dict[str, Any]) -> bool:
    needs = op.get("x-scopes")
    return needs is None or "admin" in scopes or bool(scopes & set(needs))


async def call(http: httpx.AsyncClient, path: str, method: str, op: dict[str, Any],
               key: str | None) -> httpx.Response:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    kw: dict[str, Any] = {}
    if "requestBody" in op:
        # a valid event (a sender's one call); else an empty body, invalid for most (422)
        kw["json"] = {"name": "scope.test"} if op["operationId"] == "sendEvents" else {}
    params = {"timeout": "0"} if op["operationId"] == "waitRun" else {}
    return await http.request(method, concrete(path), headers=headers, params=params, **kw)


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as c:
        yield c


async def make_key(http: httpx.AsyncClient, name: str, scopes: list[str]) -> dict[str, Any]:
    r = await http.post("/api/v1/keys", json={"name": name, "scopes": scopes},
                        headers={"authorization": f"Bearer {procs.API_KEY}"})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    assert made["key"].startswith("dk_") and made["scopes"] == scopes
    return made


async def test_every_operation_with_each_scope(stack: Stack, http: httpx.AsyncClient) -> None:
    keys: dict[str, tuple[str, set[str]]] = {"admin (settings)": (procs.API_KEY, {"admin"})}
    for scope in ("admin", "events", "read"):
        keys[scope] = ((await make_key(http, f"walk-{scope}", [scope]))["key"], {scope})
    seen = 0
    for path, method, op in operations():
        r = await call(http, path, method, op, None)
        if op.get("security") == []:  # public: its handler answers, with no API key
            # (a webhook delivery to an unknown source: 404 from the handler, not a 401)
            assert r.status_code < 500 and r.status_code not in (401, 403), (
                method, path, r.status_code, r.text)
        else:
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
        for label, (key, scopes) in keys.items():
            r = await call(http, path, method, op, key)
            where = (label, method, path, r.status_code, r.text[:300])
            if allowed(scopes, op):
                assert r.status_code not in (401, 403) and r.status_code < 500, where
            else:
                assert r.status_code == 403, where
                err = r.json()["error"]
                assert err["code"] == "forbidden" and op["x-scopes"][0] in err["message"]
            seen += 1
    assert seen == 4 * sum(1 for _ in operations())
    # (the dev launcher's banner prints its own settings key, on purpose)
    made = [k for label, (k, _) in keys.items() if label != "admin (settings)"]
    assert not any(k in stack.orch.log() for k in made)


async def test_revoked_key_fails_at_once(stack: Stack, http: httpx.AsyncClient) -> None:
    admin = {"authorization": f"Bearer {procs.API_KEY}"}
    made = await make_key(http, "short-lived", ["read"])
    mine = {"authorization": f"Bearer {made['key']}"}
    assert (await http.get("/api/v1/runs", headers=mine)).status_code == 200
    r = await http.delete(f"/api/v1/keys/{made['id']}", headers=admin)
    assert r.status_code == 204
    r = await http.get("/api/v1/runs", headers=mine)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    listed = (await http.get("/api/v1/keys", headers=admin)).json()["keys"]
    (row,) = [k for k in listed if k["id"] == made["id"]]
    assert row["revoked_at"] is not None and row["last_used_at"] is not None
    assert row["prefix"] == made["key"][:11] and "key" not in row and "hash" not in row
    assert (await http.delete("/api/v1/keys/no-such-id", headers=admin)).status_code == 404


async def test_list_answer_never_holds_a_key(stack: Stack, http: httpx.AsyncClient) -> None:
    made = await make_key(http, "secret", ["events"])
    r = await http.get("/api/v1/keys", headers={"authorization": f"Bearer {procs.API_KEY}"})
    assert r.status_code == 200
    assert made["key"] not in r.text and made["key"][11:] not in r.text
    assert procs.API_KEY not in r.text


@pytest.mark.parametrize("body, field", [
    ({"scopes": ["read"]}, "name"),
    ({"name": "x"}, "scopes"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": ["root"]}, "scopes[0]"),
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"name": "x", "scopes": "read"}, "scopes"),
    ({"name": "x", "scopes": ["read"], "key": "dk_mine"}, "key"),
])
async def test_bad_key_requests_are_422_naming_the_field(
        stack: Stack, http: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    r = await http.post("/api/v1/keys", json=body,
                        headers={"authorization": f"Bearer {procs.API_KEY}"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field, r.text


async def test_non_admin_keys_cannot_manage_keys(stack: Stack, http: httpx.AsyncClient) -> None:
    for scope in ("events", "read"):
        key = (await make_key(http, f"no-{scope}", [scope]))["key"]
        r = await http.post("/api/v1/keys", json={"name": "escalate", "scopes": ["admin"]},
                            headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DURABLE_API_KEY": procs.API_KEY, "PYTHONPATH": str(procs.ROOT)}
    return subprocess.run([sys.executable, "-m", "orchestrator", "keys", "--url", stack.base,
                           *args], env=env, cwd=procs.ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_creates_lists_and_revokes(stack: Stack) -> None:
    made = cli(stack, "create", "--name", "from-cli", "--scope", "read", "--scope", "events")
    assert made.returncode == 0, made.stderr
    fields = dict(line.split(None, 1) for line in made.stdout.splitlines())
    key, key_id = fields["key"], fields["id"]
    assert fields["scopes"] == "events read"
    assert httpx.get(f"{stack.base}/api/v1/runs", headers={
        "authorization": f"Bearer {key}"}).status_code == 200
    listed = cli(stack, "list")
    assert listed.returncode == 0 and key_id in listed.stdout and key[:11] in listed.stdout
    assert key not in listed.stdout
    assert cli(stack, "revoke", key_id).returncode == 0
    assert httpx.get(f"{stack.base}/api/v1/runs", headers={
        "authorization": f"Bearer {key}"}).status_code == 401
    missing = cli(stack, "revoke", "no-such-id")
    assert missing.returncode != 0 and "404" in missing.stderr
