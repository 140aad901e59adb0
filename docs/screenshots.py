"""Writes PNGs of the dashboard's main pages to docs/screenshots/: starts a stack (the
orchestrator and the test app), makes some runs (a DAG, a failed one, a sleeping one)
and photographs the pages in headless chromium.

    PYTHONPATH=. python docs/screenshots.py    (from the repository root)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import start_stack
from tests.support import procs

OUT = Path(__file__).parent / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    stack = start_stack(Path(tempfile.mkdtemp()))
    h = {"authorization": f"Bearer {procs.API_KEY}"}
    api = httpx.Client(base_url=f"{stack.base}/api/v1", headers=h, timeout=30)
    try:
        def run(fn: str, inp: object = None) -> str:
            rid: str = api.post("/runs", json={"function": fn, "input": inp}).json()["id"]
            return rid

        dag = run("diamond", 1)
        failed = run("always-fails")
        for i in range(3):
            run("chain", i + 2)
        run("echo", {"order": 42})
        sleeping = run("long-sleep")
        woken = run("waiter", {"key": "shot", "timeout": 3600})
        time.sleep(0.5)
        ev = api.post("/events", json={"name": "test.go",
                                       "data": {"key": "shot", "order": 42}}).json()["ids"][0]
        api.post("/events", json={"name": "test.trigger", "data": {"v": 1}})
        for rid in (dag, failed, woken):
            api.get(f"/runs/{rid}/wait", params={"timeout": 20})
        api.post("/crons", json={"function": "ticker", "expression": "*/5 * * * *"})
        time.sleep(1)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = b.new_page(base_url=stack.base, viewport={"width": 1280, "height": 800})
            page.goto("/login")
            page.screenshot(path=str(OUT / "login.png"))
            page.fill("input[name=api_key]", procs.API_KEY)
            page.click("button[type=submit]")
            page.wait_for_selector("table.runs")
            for name, path in (("runs", "/"), ("run-dag", f"/runs/{dag}"),
                               ("run-failed", f"/runs/{failed}"),
                               ("run-live", f"/runs/{sleeping}"),
                               ("run-wait", f"/runs/{woken}"),
                               ("events", "/events"), ("event", f"/events/{ev}"),
                               ("functions", "/functions"), ("apps", "/apps"),
                               ("schedules", "/schedules"), ("keys", "/keys")):
                page.goto(path)
                if name == "run-dag":
                    page.wait_for_selector(".dag svg")
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
            b.close()
        api.post(f"/runs/{sleeping}/cancel", json={})
    finally:
        api.close()
        stack.orch.stop()
        stack.app.stop()


if __name__ == "__main__":
    main()
