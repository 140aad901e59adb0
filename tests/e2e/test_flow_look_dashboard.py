"""Flow control as the REST API and the dashboard show it: an app declaring every control
(tests/apps/flow_look_controls_app.py) is registered; ``GET /api/v1/functions`` and
``/functions/{name}`` return each control as declared, and a function's page says each
in words (plain HTTP, then a real browser)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from sdk import flow
from tests.apps.flow_look_controls_app import FUNCTIONS
from tests.support import procs

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
AUTH = {"authorization": f"Bearer {procs.API_KEY}"}


class Controls:
    def __init__(self, tmp: Path, db_url: str | None) -> None:
        self.app, self.app_url = procs.app(tmp, "tests.apps.flow_look_controls_app:app")
        self.orch, self.base = procs.orchestrator(tmp, app_url=self.app_url, db_url=db_url)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def controls(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Controls]:
    db_url = request.getfixturevalue("pg").create_db() if request.param == "postgres" else None
    s = Controls(tmp_path_factory.mktemp("controls"), db_url)
    s.app.start()
    s.orch.start()
    try:
        r = httpx.post(f"{s.base}/api/v1/apps", json={"url": s.app_url}, headers=AUTH,
                       timeout=10)
        assert r.status_code == 200, r.text
        yield s
    finally:
        s.orch.stop()
        s.app.stop()


def declared(cfg: dict[str, Any]) -> dict[str, Any]:
    """The flow-control part of a config (a workflow's tasks' concurrency too)."""
    out = {k: cfg[k] for k in flow.FLOW_KEYS if k in cfg}
    if "tasks" in cfg:
        out["tasks"] = {t["name"]: t.get("concurrency") for t in cfg["tasks"]}
    return out


def page_text(c: httpx.Client, path: str) -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    return html.unescape(re.sub(r"\s+", " ", r.text))


def test_get_functions_returns_every_declared_control(controls: Controls) -> None:
    want = {fn.name: declared(fn.config()) for fn in FUNCTIONS}
    assert set(want["ctl-all"]) == set(flow.FLOW_KEYS) - {"batch"}  # all but batch...
    assert "batch" in want["ctl-batch"]  # ...which cannot go with debounce
    assert want["ctl-flow"]["tasks"]["fetch"] == [{"limit": 3, "key": "input.region"}]
    with httpx.Client(base_url=f"{controls.base}/api/v1", headers=AUTH, timeout=10) as c:
        listed = {f["name"]: f for f in c.get("/functions").json()["functions"]}
        for name, flow_cfg in want.items():
            assert declared(listed[name]) == flow_cfg, name
            one = c.get(f"/functions/{name}").json()
            assert declared(one) == flow_cfg, name
    assert listed["ctl-all"]["concurrency"] == [{"limit": 5, "key": "event.data.customer_id"},
                                                {"limit": 50}]
    assert listed["ctl-all"]["throttle"] == {"limit": 100, "period": 60.0, "burst": 10}
    assert listed["ctl-batch"]["priority"] == {"default": 7}
    assert declared(listed["ctl-none"]) == {}


@contextmanager
def signed_in(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/login", data={"api_key": procs.API_KEY, "next": "/"})
        assert r.status_code == 303, r.text
        yield c


def test_a_function_page_says_each_control_in_words(controls: Controls) -> None:
    with signed_in(controls.base) as c:
        t = page_text(c, "/functions/ctl-all")
        assert ("at most 5 running at once per value of event.data.customer_id; runs over "
                "the limit wait in order (a sleeping or waiting run holds no slot)") in t
        assert "at most 50 running at once across all its runs" in t
        assert ("at most 100 starts per 60 s across all its runs, bursts of up to 10 at "
                "once; the excess is queued and starts later") in t
        assert ("at most 1000 runs per 3600 s per value of input.account; the excess is "
                "dropped, recorded as a skipped run with the reason") in t
        assert ("one run per burst of triggers per value of event.data.customer_id: it "
                "starts once none has come for 5 s (at most 60 s after the burst's first), "
                "with the last trigger's input and event") in t
        assert ("at most one run at a time per value of input.account: a new trigger "
                "cancels the active run and starts") in t
        assert ("the trigger's priority if given, else the value at event.data.tier (an "
                "integer 1-10), else 3") in t
        t = page_text(c, "/functions/ctl-batch")
        assert ("runs of up to 100 events per value of event.data.source: a batch starts "
                "when full, or 5 s after its first event") in t
        assert ("at most one run at a time for the function: a new trigger while one is "
                "active is skipped, recorded with the reason") in t
        assert "the trigger's priority if given, else 7" in t
        t = page_text(c, "/functions/ctl-none")
        assert "None declared: every trigger is a run" in t
        t = page_text(c, "/functions/ctl-flow")
        assert "the trigger's priority if given, else 2" in t
        assert "at most 3 running at once per value of input.region" in t


def test_a_run_of_the_default_priority_shows_none(controls: Controls) -> None:
    with httpx.Client(base_url=f"{controls.base}/api/v1", headers=AUTH, timeout=30) as c:
        rid = c.post("/runs", json={"function": "ctl-none", "input": 1}).json()["id"]
        assert c.get(f"/runs/{rid}/wait", params={"timeout": 20}).json()["status"] == \
            "completed"
    with signed_in(controls.base) as c:
        r = c.get(f"/runs/{rid}")
        assert r.status_code == 200 and rid in r.text
        assert 'id="priority"' not in r.text


@pytest.fixture(scope="module")
def browser_page(controls: Controls) -> Iterator[Page]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        ctx = b.new_context(base_url=controls.base)
        pg = ctx.new_page()
        pg.goto("/login")
        pg.fill("input[name=api_key]", procs.API_KEY)
        pg.click("button[type=submit]")
        expect(pg.locator("h1")).to_have_text("Runs")
        yield pg
        ctx.close()
        b.close()


def test_browser_shows_the_flow_table_and_a_tasks_concurrency(browser_page: Page) -> None:
    page = browser_page
    page.goto("/functions/ctl-all")
    rows = page.locator("#flow tr")
    expect(rows).to_have_count(7)  # two concurrency limits and five other controls
    expect(rows.nth(0).locator("th")).to_have_text("concurrency")
    expect(page.locator("#flow")).to_contain_text("at most 100 starts per 60 s")
    page.goto("/functions/ctl-flow")
    expect(page.locator("#flow tr")).to_have_count(1)
    tasks = page.locator("#tasks tbody tr")
    expect(tasks.nth(0).locator("td").first).to_have_text("fetch")
    expect(tasks.nth(0).locator(".task-concurrency")).to_contain_text(
        "at most 3 running at once per value of input.region")
    expect(tasks.nth(1).locator("td").first).to_have_text("store")
    expect(tasks.nth(1).locator(".task-concurrency")).to_have_text("")
