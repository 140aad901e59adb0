"""Webhook sources through the REST API, and real-shaped deliveries signed as the
providers sign them, against the app in process (SQLite)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.engine.engine import Engine
from orchestrator.engine.webhooks import MAX_DELIVERY_BYTES
from orchestrator.store.models import events
from tests.support.webhooks import (
    GITHUB_PUSH,
    SLACK_COMMAND,
    STRIPE_EVENT,
    github_headers,
    slack_headers,
    stripe_headers,
)

AUTH = {"authorization": "Bearer k"}

@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db", api_keys=["k"],
                              signing_key="s"))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def c(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def create(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/api/v1/webhooks", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def stored_events(app: Starlette) -> dict[str, tuple[str, Any]]:
    engine: Engine = app.state.engine
    async with engine.store.read() as tx:
        rows = await tx.events.conn.execute(select(events.c.id, events.c.name,
                                                   events.c.data_json))
        return {r.id: (r.name, json.loads(r.data_json)) for r in rows}


async def test_management(c: httpx.AsyncClient) -> None:
    src = await create(c, kind="github")
    assert src["path"] == f"/hooks/{src['id']}" and len(src["secret"]) >= 32
    assert src["event"] == {"source": "header", "key": "X-GitHub-Event", "prefix": "github."}
    assert src["delivery_id"]["key"] == "X-GitHub-Delivery" and src["signature"] is None
    got = (await c.get(f"/api/v1/webhooks/{src['id']}", headers=AUTH)).json()
    assert "secret" not in got and got["id"] == src["id"]
    listed = (await c.get("/api/v1/webhooks", headers=AUTH)).json()["webhooks"]
    assert [s["id"] for s in listed] == [src["id"]] and "secret" not in listed[0]
    rotated = (await c.post(f"/api/v1/webhooks/{src['id']}/secret", headers=AUTH)).json()
    assert rotated["secret"] != src["secret"] and rotated["previous_secret_until"]
    assert (await c.delete(f"/api/v1/webhooks/{src['id']}", headers=AUTH)).status_code == 204
    assert (await c.get(f"/api/v1/webhooks/{src['id']}", headers=AUTH)).status_code == 404
    assert (await c.post(f"/hooks/{src['id']}", content=b"{}")).status_code == 404
    assert (await c.get("/api/v1/webhooks")).status_code == 401  # management needs a key


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "gitlab"}, "kind"),
    ({"kind": "generic"}, "event"),  # generic needs an event rule
    ({"kind": "github", "event": {"source": "body", "key": "x"}}, "event.source"),
    ({"kind": "github", "delivery_id": {"source": "header"}}, "delivery_id"),
    ({"kind": "generic", "event": {"source": "constant", "key": "x"},
      "signature": {"algorithm": "md5"}}, "signature.algorithm"),
    ({"kind": "stripe", "tolerance": 0}, "tolerance"),
    ({"kind": "stripe", "secret": ""}, "secret"),
    ({"kind": "github", "extra": 1}, "extra"),
])
async def test_bad_sources_name_the_field(c: httpx.AsyncClient, body: dict[str, Any],
                                          field: str) -> None:
    r = await c.post("/api/v1/webhooks", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


async def test_github_push_json_and_form_and_redelivery(c: httpx.AsyncClient,
                                                        app: Starlette) -> None:
    src = await create(c, kind="github", secret="gh-secret")
    body = json.dumps(GITHUB_PUSH).encode()
    headers = github_headers("gh-secret", body, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
    r = await c.post(src["path"], content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": f"{src['id']}:72d3162e-cc78-11e3-81ab-4c9367dc0958",
                        "duplicate": False}
    again = await c.post(src["path"], content=body, headers=headers)  # GitHub's redeliver
    assert again.status_code == 200 and again.json()["duplicate"] is True
    form = urlencode({"payload": json.dumps(GITHUB_PUSH)}).encode()
    r = await c.post(src["path"], content=form, headers=github_headers(
        "gh-secret", form, "d2", content_type="application/x-www-form-urlencoded"))
    assert r.status_code == 200, r.text
    events = await stored_events(app)
    assert events[r.json()["id"]] == ("github.push", GITHUB_PUSH)
    assert events[f"{src['id']}:72d3162e-cc78-11e3-81ab-4c9367dc0958"] == (
        "github.push", GITHUB_PUSH)
    assert len(events) == 2


async def test_stripe_payment_intent_succeeded(c: httpx.AsyncClient, app: Starlette) -> None:
    src = await create(c, kind="stripe", secret="whsec_test_secret")
    body = json.dumps(STRIPE_EVENT, indent=2).encode()  # Stripe pretty-prints
    r = await c.post(src["path"], content=body, headers=stripe_headers("whsec_test_secret",
                                                                        body))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == f"{src['id']}:evt_3MtwBwLkdIwHu7ix28a3tqPa"
    assert (await stored_events(app))[r.json()["id"]] == (
        "stripe.payment_intent.succeeded", STRIPE_EVENT)
    old = stripe_headers("whsec_test_secret", body, int(time.time()) - 301)
    r = await c.post(src["path"], content=body, headers=old)  # a replay: too old
    assert r.status_code == 401 and r.json()["error"]["field"] == "Stripe-Signature"


async def test_slack_slash_command(c: httpx.AsyncClient, app: Starlette) -> None:
    src = await create(c, kind="slack", secret="8f742231b10e8888abcd99yyyzzz85a5")
    body = urlencode(SLACK_COMMAND).encode()
    r = await c.post(src["path"], content=body,
                     headers=slack_headers("8f742231b10e8888abcd99yyyzzz85a5", body))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == f"{src['id']}:{SLACK_COMMAND['trigger_id']}"
    assert (await stored_events(app))[r.json()["id"]] == ("slack.command", SLACK_COMMAND)


async def test_generic_with_its_own_rules(c: httpx.AsyncClient, app: Starlette) -> None:
    src = await create(c, kind="generic", secret="k",
                       event={"source": "field", "key": "meta.event", "prefix": "shop."},
                       delivery_id={"source": "header", "key": "X-Delivery"},
                       signature={"header": "X-Shop-Hmac", "algorithm": "sha512",
                                  "encoding": "base64"})
    assert src["signature"]["header"] == "X-Shop-Hmac"
    body = b'{"meta": {"event": "order.paid"}, "total": 5}'
    sig = base64.b64encode(hmac.new(b"k", body, hashlib.sha512).digest()).decode()
    r = await c.post(src["path"], content=body,
                     headers={"x-shop-hmac": sig, "x-delivery": "42",
                              "content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert (await stored_events(app))[f"{src['id']}:42"][0] == "shop.order.paid"


async def test_bad_deliveries_store_nothing_and_are_logged(
        c: httpx.AsyncClient, app: Starlette, caplog: pytest.LogCaptureFixture) -> None:
    src = await create(c, kind="github", secret="gh")
    good = json.dumps(GITHUB_PUSH).encode()
    cases: list[tuple[bytes, dict[str, str], int, str | None]] = [
        (good, {"x-github-event": "push", "x-github-delivery": "a"}, 401,
         "X-Hub-Signature-256"),
        (good, github_headers("wrong", good, "b"), 401, "X-Hub-Signature-256"),
        (good + b" ", github_headers("gh", good, "c"), 401, "X-Hub-Signature-256"),
        (b"{not json", github_headers("gh", b"{not json", "d"), 400, "body"),
        (b"[1, 2]", github_headers("gh", b"[1, 2]", "e"), 400, "body"),
        (good, {**github_headers("gh", good, "f"), "x-github-event": "no such"}, 400,
         "body"),
        (good, {k: v for k, v in github_headers("gh", good, "g").items()
                if k != "x-github-delivery"}, 400, "header X-GitHub-Delivery"),
    ]
    big = b'{"a": "' + b"x" * MAX_DELIVERY_BYTES + b'"}'
    cases.append((big, github_headers("gh", big, "h"), 413, None))
    with caplog.at_level(logging.WARNING, "orchestrator.webhooks"):
        for body, headers, status, field in cases:
            r = await c.post(src["path"], content=body, headers=headers)
            assert r.status_code == status, (headers, r.text)
            assert r.json()["error"].get("field") == field
        r = await c.post("/hooks/no-such-source", content=good,
                         headers=github_headers("gh", good, "i"))
        assert r.status_code == 404
    assert await stored_events(app) == {}
    refused = [rec.getMessage() for rec in caplog.records]
    assert sum(src["id"] in m for m in refused) == len(cases)
    assert any("no-such-source" in m for m in refused)


async def test_rotation_keeps_the_previous_secret_for_its_grace(c: httpx.AsyncClient) -> None:
    src = await create(c, kind="github", secret="old")
    body = json.dumps(GITHUB_PUSH).encode()
    url = f"/api/v1/webhooks/{src['id']}/secret"
    r = await c.post(url, json={"secret": "new"}, headers=AUTH)
    assert r.json()["secret"] == "new"
    for n, secret in enumerate(("old", "new")):  # both verify during the grace
        ok = await c.post(src["path"], content=body, headers=github_headers(secret, body,
                                                                             f"r{n}"))
        assert ok.status_code == 200, ok.text
    r = await c.post(url, json={"secret": "newer", "grace_seconds": 0}, headers=AUTH)
    assert r.json()["previous_secret_until"] is None
    for secret in ("old", "new"):  # dropped at once
        bad = await c.post(src["path"], content=body, headers=github_headers(secret, body,
                                                                              "x"))
        assert bad.status_code == 401
    assert (await c.post(src["path"], content=body,
                         headers=github_headers("newer", body, "y"))).status_code == 200
    r = await c.post(url, json={"grace_seconds": -1}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["field"] == "grace_seconds"


async def test_unauthenticated_source_warns(c: httpx.AsyncClient, app: Starlette,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "orchestrator.webhooks"):
        src = await create(c, kind="none", event={"source": "constant", "key": "ping"})
        assert src["secret"] is None and "unauthenticated" in src["warning"]
        r = await c.post(src["path"], content=b'{"x": 1}',
                         headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert (await stored_events(app))[r.json()["id"]] == ("ping", {"x": 1})
    assert sum("unauthenticated" in rec.getMessage() for rec in caplog.records) == 2
    r = await c.post(f"/api/v1/webhooks/{src['id']}/secret", headers=AUTH)
    assert r.status_code == 422
