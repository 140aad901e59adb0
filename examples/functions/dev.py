"""``make run``: the orchestrator (embedded SQLite) and the example app, wired together.

Starts the example app under uvicorn on :8000 and ``orchestrator dev`` on :8288 with the
same signing key, registers the app, and prints where to send events. Ctrl-C stops both.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    state = ROOT / ".durable"
    state.mkdir(exist_ok=True)
    keys = state / "dev-keys.env"
    if not keys.exists():  # stable across restarts, so runs in the dev database resume
        keys.write_text(f"DURABLE_SIGNING_KEY=dev-{secrets.token_urlsafe(24)}\n"
                        f"DURABLE_API_KEY=dev-{secrets.token_urlsafe(18)}\n")
    env = dict(os.environ)
    for line in keys.read_text().splitlines():
        k, _, v = line.partition("=")
        env.setdefault(k, v)
    env.setdefault("ORDERS_FOLLOWUP_DELAY_S", "10")  # the demo's "sleep a day" is 10 s
    env.setdefault("ORDERS_DELIVERY_TIMEOUT_S", "300")
    env["PYTHONPATH"] = str(ROOT)
    app_port = env.get("APP_PORT", "8000")
    orch_port = env.get("DURABLE_PORT", "8288")
    app = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.functions.app:app", "--host", "127.0.0.1",
         "--port", app_port, "--log-level", "warning"], env=env, cwd=ROOT)
    orch = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "dev", "--port", orch_port,
         "--database-url", f"sqlite:///{state / 'dev.db'}",
         "--app", f"http://127.0.0.1:{app_port}/api/durable"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and orch.poll() is None and app.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{orch_port}/readyz", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    if orch.poll() is not None or app.poll() is not None:
        print("\n  ! the orchestrator or the example app did not start: see the messages "
              "above", file=sys.stderr)
        for p in (orch, app):
            if p.poll() is None:
                p.terminate()
        return 1
    time.sleep(1.0)  # the orchestrator registers the app right after it is ready
    key = env["DURABLE_API_KEY"]
    print(f"""
  Example app (orders-app)  http://127.0.0.1:{app_port}/  (durable endpoint /api/durable)
  Functions: fulfil-order, send-notification, etl-daily-sales (docs/workflows.md)

  1. start an order (an event):
     curl -s -X POST http://127.0.0.1:{orch_port}/api/v1/events \\
       -H 'Authorization: Bearer {key}' -H 'content-type: application/json' \\
       -d '{{"name": "order.created", "data": {{"order_id": "o-1", "amount_cents": 4200,
            "customer": "ada", "notify": ["ada@example.com", "ops@example.com"]}}}}'
  2. deliver it (the run is waiting for this event):
     curl -s -X POST http://127.0.0.1:{orch_port}/api/v1/events \\
       -H 'Authorization: Bearer {key}' -H 'content-type: application/json' \\
       -d '{{"name": "shipment.delivered", "data": {{"order_id": "o-1", "carrier": "ups"}}}}'
  3. watch the run (it sleeps {env['ORDERS_FOLLOWUP_DELAY_S']} s, then notifies):
     curl -s -H 'Authorization: Bearer {key}' http://127.0.0.1:{orch_port}/api/v1/runs

  4. run the daily sales ETL workflow (a DAG) and wait up to 30 s for its output:
     curl -s -X POST 'http://127.0.0.1:{orch_port}/api/v1/runs?wait=30' \\
       -H 'Authorization: Bearer {key}' -H 'content-type: application/json' \\
       -d '{{"function": "etl-daily-sales",
            "input": {{"date": "2026-11-25", "regions": ["eu", "us", "apac"]}}}}'

  Keys are in .durable/dev-keys.env. Ctrl-C stops both processes.
""", flush=True)
    try:
        while app.poll() is None and orch.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in (orch, app):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (orch, app):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
