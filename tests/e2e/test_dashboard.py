"""The dashboard (orchestrator/dashboard) against a live orchestrator and the test app:
plain HTTP (pages, redirects, CSRF, scopes, escaping, no secrets) and a real browser
(Debian's chromium driven by Playwright)."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import Stack, running_stack
from tests.support import procs

XSS = "<script>alert(1)</script>"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def dash(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The orchestrator and the test app, on each database (every page reads through the
    engine's facade: the same pages, the same queries, two backends)."""
    with running_stack(request, tmp_path_factory.mktemp("dash"), request.param) as s:
        yield s


def api(stack: Stack, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, f"{stack.base}/api/v1{path}", timeout=30,
                      headers={"authorization": f"Bearer {procs.API_KEY}"}, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def start(stack: Stack, function: str, input: Any = None) -> str:
    rid: str = api(stack, "POST", "/runs", json={"function": function, "input": input})["id"]
    return rid


def wait(stack: Stack, rid: str) -> dict[str, Any]:
    run: dict[str, Any] = api(stack, "GET", f"/runs/{rid}/wait", params={"timeout": 20})
    return run


@contextmanager
def signed_in(stack: Stack, key: str = procs.API_KEY) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base, timeout=30) as c:
        yield _login(c, key)


def _login(c: httpx.Client, key: str) -> httpx.Client:
    r = c.post("/login", data={"api_key": key, "next": "/"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


# -- plain HTTP ------------------------------------------------------------------------------

def test_pages_need_a_session_and_redirect_to_sign_in(dash: Stack) -> None:
    for path in ("/", "/functions", "/apps", "/schedules", "/events", "/keys", "/runs/x"):
        r = httpx.get(f"{dash.base}{path}")
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next=")
    r = httpx.post(f"{dash.base}/runs/x/cancel")
    assert r.status_code == 401
    assert httpx.get(f"{dash.base}/login").status_code == 200
    # the API and the probes are untouched
    assert httpx.get(f"{dash.base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{dash.base}/api/v1/runs").status_code == 401


def test_bad_and_events_keys_cannot_sign_in(dash: Stack) -> None:
    r = httpx.post(f"{dash.base}/login", data={"api_key": "wrong"})
    assert r.status_code == 401 and "Unknown or revoked" in r.text
    ev = api(dash, "POST", "/keys", json={"name": "ev", "scopes": ["events"]})["key"]
    r = httpx.post(f"{dash.base}/login", data={"api_key": ev})
    assert r.status_code == 401 and "only send events" in r.text


def test_every_page_renders(dash: Stack) -> None:
    rid = start(dash, "echo", {"hello": 1})
    wait(dash, rid)
    with signed_in(dash) as c:
        for path in ("/", "/functions", "/apps", "/schedules", "/events", "/keys",
                     f"/runs/{rid}", f"/runs/{rid}/live", "/static/vendor/htmx.min.js",
                     "/static/vendor/dagre.min.js", "/static/dash.css"):
            r = c.get(path)
            assert r.status_code in (200, 286), (path, r.status_code)
        assert rid in c.get("/", params={"function": "echo"}).text
        assert rid not in c.get("/", params={"function": "chain"}).text
        r = c.get("/", params={"status": "bogus"})
        assert r.status_code == 400 and "status" in r.text
        r = c.get("/", params={"since": "yesterday"})
        assert r.status_code == 400 and "since" in r.text
        assert c.get("/runs/nope").status_code == 404
        assert c.get("/", params={"q": rid}).headers["location"] == f"/runs/{rid}"


def test_csrf_token_is_required(dash: Stack) -> None:
    rid = start(dash, "long-sleep")
    with signed_in(dash) as c:
        r = c.post(f"/runs/{rid}/cancel")
        assert r.status_code == 403 and "CSRF" in r.text
        r = c.post(f"/runs/{rid}/cancel", data={"csrf_token": "forged"})
        assert r.status_code == 403
        assert api(dash, "GET", f"/runs/{rid}")["status"] != "cancelled"
        token = csrf_of(c.get(f"/runs/{rid}").text)
        r = c.post(f"/runs/{rid}/cancel", data={"csrf_token": token})
        assert r.status_code == 303
    assert api(dash, "GET", f"/runs/{rid}")["status"] == "cancelled"


def test_read_key_sees_pages_without_actions(dash: Stack) -> None:
    key = api(dash, "POST", "/keys", json={"name": "ro", "scopes": ["read"]})
    rid = start(dash, "long-sleep")
    with signed_in(dash, key["key"]) as c:
        page = c.get(f"/runs/{rid}").text
        assert "Cancel run" not in page and "read-only" in page
        r = c.post(f"/runs/{rid}/cancel", data={"csrf_token": csrf_of(page)})
        assert r.status_code == 403
        api(dash, "DELETE", f"/keys/{key['id']}")
        time.sleep(2.5)  # the key cache's lifetime on this replica is 2 s at most
        assert c.get("/").status_code == 303  # revoked: the session ends
    api(dash, "POST", f"/runs/{rid}/cancel", json={})


def test_output_is_escaped_and_no_secret_is_shown(dash: Stack) -> None:
    rid = start(dash, "echo", {"x": XSS})
    wait(dash, rid)
    created = api(dash, "POST", "/keys", json={"name": "hidden", "scopes": ["read"]})
    with signed_in(dash) as c:
        html = c.get(f"/runs/{rid}").text
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        pages = "".join(c.get(p).text for p in ("/keys", "/apps", "/functions", "/"))
    for secret in (procs.SIGNING_KEY, procs.API_KEY, created["key"]):
        assert secret not in pages
    assert created["prefix"] in pages


def test_catalog_pages_events_functions_and_crons(dash: Stack) -> None:
    name = f"page.test{int(time.time() * 1000)}"
    sent = api(dash, "POST", "/events", json=[{"name": name, "data": {"i": i}}
                                              for i in range(51)])
    with signed_in(dash) as c:
        first = c.get("/events", params={"name": name}).text
        shown = re.findall(r'href="/events/([0-9a-f]+)"', first)
        assert len(shown) == 50  # 50 a page (one time: newest first means by id then)
        m = re.search(r'href="(/events\?[^"]+)" id="next-page"', first)
        assert m, "no link to the next page"
        second = c.get(m.group(1).replace("&amp;", "&")).text
        rest = re.findall(r'href="/events/([0-9a-f]+)"', second)
        assert len(rest) == 1 and 'id="next-page"' not in second
        assert sorted(shown + rest) == sorted(sent["ids"])
        assert shown == sorted(shown, reverse=True) and rest[0] < shown[-1]
        assert c.get("/events", params={"cursor": "bogus"}).status_code == 400
        assert c.get("/events/no-such-event").status_code == 404
        fn = c.get("/functions/flaky").text
        assert "max_attempts" in fn and "4" in fn
        assert 'href="/events?name=test.trigger"' in c.get("/functions/triggered").text
        assert 'href="/functions/flaky"' in c.get("/functions").text
        assert c.get("/functions/no-such-function").status_code == 404
        assert "the orchestrator's retention_days" in fn  # flaky declares no retention
    cron = api(dash, "POST", "/crons", json={"function": "echo", "expression": "0 0 1 1 *"})
    key = api(dash, "POST", "/keys", json={"name": "ro-cron", "scopes": ["read"]})
    try:
        with signed_in(dash, key["key"]) as c:
            page = c.get("/schedules").text
            assert f"/crons/{cron['id']}/pause" not in page
            r = c.post(f"/crons/{cron['id']}/pause", data={"csrf_token": csrf_of(page)})
            assert r.status_code == 403
        assert api(dash, "GET", f"/crons/{cron['id']}")["paused"] is False
    finally:
        api(dash, "DELETE", f"/crons/{cron['id']}")
        api(dash, "DELETE", f"/keys/{key['id']}")


def test_actions_trigger_send_event_bulk_replay(dash: Stack) -> None:
    with signed_in(dash) as c:
        token = csrf_of(c.get("/functions").text)
        r = c.post("/functions/trigger", data={"csrf_token": token, "function": "echo",
                                               "input": '{"a": 1}'})
        assert r.status_code == 303
        rid = r.headers["location"].rsplit("/", 1)[1]
        assert wait(dash, rid)["output"] == {"a": 1}
        r = c.post("/functions/trigger", data={"csrf_token": token, "function": "echo",
                                               "input": "{not json"})
        assert r.status_code == 400 and "input" in r.text
        r = c.post("/events/send", data={"csrf_token": token, "name": "test.trigger",
                                         "data": '{"v": 1}'})
        assert r.status_code == 200
        started = re.findall(r'href="/runs/([^"]+)"', r.text.split('id="sent"')[1])
        assert started
        failed = start(dash, "always-fails")
        assert wait(dash, failed)["status"] == "failed"
        r = c.post("/runs/bulk", data={"csrf_token": token, "action": "replay",
                                       "function": "always-fails", "status": "failed"})
        assert r.status_code == 400 and "confirm" in r.text
        r = c.post("/runs/bulk", data={"csrf_token": token, "action": "replay",
                                       "function": "always-fails", "status": "failed",
                                       "confirm": "yes"})
        assert r.status_code == 303 and "replaying" in r.headers["location"]
        assert wait(dash, failed)["history"]


def test_timeline_shows_sleeps_waits_deadlines_and_the_waking_event(dash: Stack) -> None:
    slept = start(dash, "sleeper", 0.2)
    assert wait(dash, slept)["status"] == "completed"
    woken = start(dash, "waiter", {"key": "tl-1", "timeout": 600})
    timed_out = start(dash, "waiter", {"key": "tl-2", "timeout": 0.3})
    pending = start(dash, "waiter", {"key": "tl-3"})
    with signed_in(dash) as c:
        deadline = time.monotonic() + 20
        while "waits for event" not in c.get(f"/runs/{woken}").text:
            assert time.monotonic() < deadline, "the wait never began"
            time.sleep(0.05)
        html = c.get(f"/runs/{woken}").text
        assert 'id="pending-step"' in html and "deadline" in html
        ev = api(dash, "POST", "/events", json={
            "name": "test.go", "data": {"key": "tl-1", "note": XSS}})["ids"][0]
        assert wait(dash, woken)["status"] == "completed"
        assert wait(dash, timed_out)["status"] == "completed"
        run = api(dash, "GET", f"/runs/{slept}")
        sleep_step = next(s for s in run["steps"] if s["kind"] == "sleep")
        assert sleep_step["deadline_at"] == sleep_step["ended_at"]
        assert f"slept until {sleep_step['deadline_at']}" in c.get(f"/runs/{slept}").text
        run = api(dash, "GET", f"/runs/{woken}")
        step = next(s for s in run["steps"] if s["kind"] == "wait")
        assert step["output"]["id"] == ev and step["deadline_at"] and step["started_at"]
        html = c.get(f"/runs/{woken}").text
        assert 'id="pending-step"' not in html
        assert f'href="/events/{ev}"' in html and "woken by event" in html
        assert f"before its deadline {step['deadline_at']}" in html
        assert XSS not in html and "&lt;script&gt;" in html
        run = api(dash, "GET", f"/runs/{timed_out}")
        step = next(s for s in run["steps"] if s["kind"] == "wait")
        assert step["output"] is None and step["deadline_at"]
        assert f"timed out at its deadline {step['deadline_at']}" in \
            c.get(f"/runs/{timed_out}").text
        html = c.get(f"/runs/{pending}").text
        assert "waits for event <code>test.go</code>" in html and "no deadline" in html
        # a completed run offers no replay (the engine refuses it: 409), a failed one does
        assert 'id="replay-failed"' not in c.get(f"/runs/{slept}").text
        failed = start(dash, "always-fails")
        assert wait(dash, failed)["status"] == "failed"
        assert 'id="replay-failed"' in c.get(f"/runs/{failed}").text
    api(dash, "POST", f"/runs/{pending}/cancel")


# -- in a real browser -------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, dash: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=dash.base)
    pg = ctx.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.goto("/login")
    pg.fill("input[name=api_key]", "wrong-key")
    pg.click("button[type=submit]")
    expect(pg.locator(".error")).to_contain_text("Unknown or revoked")
    pg.fill("input[name=api_key]", procs.API_KEY)
    pg.click("button[type=submit]")
    expect(pg.locator("h1")).to_have_text("Runs")
    yield pg
    assert not dialogs, dialogs
    ctx.close()


def test_browser_filter_and_escaped_output(page: Page, dash: Stack) -> None:
    rid = start(dash, "echo", XSS)
    wait(dash, rid)
    other = start(dash, "ticker")
    wait(dash, other)
    page.select_option("select[name=function]", "echo")
    page.click("form.filters button")
    expect(page.locator(f"a[href='/runs/{rid}']")).to_be_visible()
    expect(page.locator(f"a[href='/runs/{other}']")).to_have_count(0)
    page.click(f"a[href='/runs/{rid}']")
    expect(page.locator("#output")).to_contain_text(XSS)  # shown as text; no dialog


def test_browser_follows_a_run_live(page: Page, dash: Stack) -> None:
    rid = start(dash, "sleeper", 2.0)
    page.goto(f"/runs/{rid}")
    expect(page.locator("#status")).not_to_have_text("completed")
    page.evaluate("window.__same_page = true")
    expect(page.locator("#status")).to_have_text("completed", timeout=15000)
    assert page.evaluate("window.__same_page") is True  # no reload
    expect(page.locator("#output")).to_contain_text("slept")


def test_browser_shows_a_dag(page: Page, dash: Stack) -> None:
    rid = start(dash, "diamond", 1)
    wait(dash, rid)
    page.goto(f"/runs/{rid}")
    nodes = page.locator(".dag svg g.node")
    expect(nodes).to_have_count(4)
    expect(page.locator(".dag svg g.node[data-status=completed]")).to_have_count(4)
    assert page.locator(".dag svg path").count() >= 4


def test_browser_events_page_shows_an_event_and_its_runs(page: Page, dash: Stack) -> None:
    sent = api(dash, "POST", "/events", json={"name": "test.trigger",
                                              "data": {"marker": "from-the-browser"}})
    eid, [rid] = sent["ids"][0], sent["runs"][0]
    wait(dash, rid)
    page.goto("/events")
    page.fill("input[name=name]", "test.trigger")
    page.click("form.filters button")
    row = page.locator("#events tr", has=page.locator(f"a[href='/events/{eid}']"))
    expect(row.locator(f"a[href='/runs/{rid}']")).to_be_visible()
    page.click(f"a[href='/events/{eid}']")
    expect(page.locator("#data")).to_contain_text("from-the-browser")
    run = page.locator("#event-runs tr", has=page.locator(f"a[href='/runs/{rid}']"))
    expect(run).to_contain_text("triggered")
    expect(run.locator(".badge")).to_have_text("completed")
    page.click(f"#event-runs a[href='/runs/{rid}']")
    expect(page.locator("#status")).to_have_text("completed")


def test_browser_pause_then_resume_a_cron(page: Page, dash: Stack) -> None:
    cron = api(dash, "POST", "/crons", json={"function": "echo", "expression": "0 0 1 1 *"})
    try:
        page.goto("/schedules")
        row = page.locator(f"#cron-{cron['id']}")
        expect(row.locator(".state")).to_have_text("active")
        row.locator("button.pause").click()
        expect(page.locator(".flash")).to_contain_text("cron paused")
        expect(row.locator(".state")).to_have_text("paused")
        assert api(dash, "GET", f"/crons/{cron['id']}")["paused"] is True
        row.locator("button.resume").click()
        expect(page.locator(".flash")).to_contain_text("cron resumed")
        expect(row.locator(".state")).to_have_text("active")
        shown = api(dash, "GET", f"/crons/{cron['id']}")
        assert shown["paused"] is False and shown["next_fire_at"]
        expect(row).to_contain_text(shown["next_fire_at"])
    finally:
        api(dash, "DELETE", f"/crons/{cron['id']}")


def test_browser_apps_page_shows_a_last_contact(page: Page, dash: Stack) -> None:
    wait(dash, start(dash, "echo", 1))  # the app answered (and did when it registered)
    [app] = [x for x in api(dash, "GET", "/apps")["apps"] if x["url"] == dash.app_url]
    page.goto("/apps")
    cell = page.locator("tr", has=page.locator(f"code:text-is('{app['id']}')")) \
        .locator("td.last-contact")
    expect(cell).to_have_text(re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"))
    shown = next(x for x in api(dash, "GET", "/apps")["apps"] if x["id"] == app["id"])
    assert shown["last_contact_at"] is not None
    assert time.time() - 120 < shown["last_contact_at"] <= time.time()


def test_browser_cancel_and_replay(page: Page, dash: Stack) -> None:
    rid = start(dash, "long-sleep")
    page.goto(f"/runs/{rid}")
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("cancelled")
    page.click("#replay-failed")
    expect(page.locator(".flash")).to_contain_text("replaying")
    assert api(dash, "GET", f"/runs/{rid}")["history"]
    api(dash, "POST", f"/runs/{rid}/cancel", json={})


def _next_second() -> int:
    """Sleep into the next whole second; it (epoch seconds), which nothing before was
    created in."""
    t = time.time()
    time.sleep(math.ceil(t) - t + 0.02)
    return math.ceil(t)


def _local(ts: int) -> str:
    """``ts`` as a datetime-local value (the dashboard reads it as UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_browser_runs_by_time_range_and_event_with_counts(page: Page, dash: Stack) -> None:
    since = _next_second()
    echoes = [start(dash, "echo", i) for i in range(2)]
    failed = start(dash, "always-fails")
    for rid in [*echoes, failed]:
        wait(dash, rid)
    until = _next_second()
    after = start(dash, "echo", "after")
    wait(dash, after)
    eid = f"dash-{uuid.uuid4().hex}"
    [started] = api(dash, "POST", "/events", json={"id": eid, "name": "test.trigger",
                                                   "data": {"v": 2}})["runs"]
    assert started
    rows = page.locator("table.runs tbody a[href^='/runs/']")
    counts = page.locator("#counts")
    # the time range: exactly the runs created in it, and their counts
    page.fill("input[name=since]", _local(since))
    page.fill("input[name=until]", _local(until))
    page.click("form.filters button")
    expect(rows).to_have_count(3)
    for rid in (*echoes, failed):
        expect(page.locator(f"a[href='/runs/{rid}']")).to_be_visible()
    expect(page.locator(f"a[href='/runs/{after}']")).to_have_count(0)
    expect(counts.locator("[data-status=total] b")).to_have_text("3")
    expect(counts.locator("[data-status=completed] b")).to_have_text("2")
    expect(counts.locator("[data-status=failed] b")).to_have_text("1")
    expect(counts.locator("[data-status=queued] b")).to_have_text("0")
    # a count is a link to its runs, in the same time range
    counts.locator("[data-status=failed]").click()
    expect(page.locator("select[name=status]")).to_have_value("failed")
    expect(rows).to_have_count(1)
    expect(page.locator(f"a[href='/runs/{failed}']")).to_be_visible()
    expect(counts.locator("[data-status=total] b")).to_have_text("3")  # not by status
    # with a function too: the counts are that function's
    page.select_option("select[name=status]", "")
    page.select_option("select[name=function]", "echo")
    page.click("form.filters button")
    expect(rows).to_have_count(2)
    expect(counts.locator("[data-status=total] b")).to_have_text("2")
    expect(counts.locator("[data-status=failed] b")).to_have_text("0")
    # search by event id: the runs it started, with a note saying so
    page.goto("/")
    page.fill("input[name=q]", eid)
    page.click("form.filters button")
    expect(page.locator("#event-note")).to_contain_text(eid)
    expect(rows).to_have_count(len(started))
    for rid in started:
        expect(page.locator(f"a[href='/runs/{rid}']")).to_be_visible()
    # an id that is neither a run's nor an event's
    page.fill("input[name=q]", "nothing-by-this-id")
    page.click("form.filters button")
    expect(page.locator("main")).to_contain_text("No run or event with id")
    expect(page.locator("#event-note")).to_have_count(0)
