"""``make run``: the orchestrator (embedded SQLite) and the example app, wired together.

Starts the example app under uvicorn on :8000 and ``orchestrator dev`` on :8288 with the
same signing key, registers the app, and prints where to send events. Ctrl-C or SIGTERM
(as a process manager sends it) stops both.

Options (or the environment), validated as the orchestrator's settings are: see
``LauncherSettings``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.config import (
    DEV_KEYS_FILE,
    ENV_PREFIX,
    BadSettings,
    Flag,
    Port,
    add_flags,
    dev_keys,
    validated,
)

ROOT = Path(__file__).resolve().parents[2]


class LauncherSettings(BaseSettings):
    """``make run``'s own settings (the orchestrator it starts reads its own)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True,
                                      extra="ignore", populate_by_name=True)

    state_dir: Annotated[Path, Flag("--state-dir"), Field(
        description="the folder of the dev database and its keys")] = ROOT / ".durable"
    port: Annotated[Port, Flag("--port"), Field(
        description="the orchestrator's port")] = 8288
    app_port: Annotated[Port, Flag("--app-port"), Field(
        validation_alias="APP_PORT", description="the example app's port")] = 8000


class _Stop(Exception):
    """SIGTERM/SIGHUP arrived: stop both processes, as Ctrl-C does."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def main(argv: list[str] | None = None) -> int:
    prog = "python -m examples.functions.dev"
    ap = argparse.ArgumentParser(prog=prog)
    fields = add_flags(ap, LauncherSettings)
    args = ap.parse_args(argv)
    try:
        settings = validated(LauncherSettings, {f: getattr(args, f) for f in fields})
    except BadSettings as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        return _run(settings, procs)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one: still stop both
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop(procs)


def _run(args: LauncherSettings, procs: list[subprocess.Popen[bytes]]) -> int:
    state = args.state_dir.resolve()
    env = dict(os.environ)
    # the same keys as `orchestrator dev` keeps beside its database (one code path):
    # stable across restarts, so runs in the dev database resume
    for k, v in dev_keys(state).items():
        env.setdefault(k, v)
    env.setdefault("ORDERS_FOLLOWUP_DELAY_S", "10")  # the demo's "sleep a day" is 10 s
    env.setdefault("ORDERS_DELIVERY_TIMEOUT_S", "300")
    env["PYTHONPATH"] = str(ROOT)
    app_port, orch_port = str(args.app_port), str(args.port)
    app = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.functions.app:app", "--host", "127.0.0.1",
         "--port", app_port, "--log-level", "warning"], env=env, cwd=ROOT)
    procs.append(app)
    orch = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "dev", "--port", orch_port,
         "--database-url", f"sqlite:///{state / 'dev.db'}",
         "--app", f"http://127.0.0.1:{app_port}/api/durable"], env=env, cwd=ROOT)
    procs.append(orch)
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

  Keys are in {state / DEV_KEYS_FILE}. Ctrl-C stops both processes.
""", flush=True)
    while app.poll() is None and orch.poll() is None:
        time.sleep(0.5)
    return 0 if orch.returncode in (None, 0) and app.returncode in (None, 0) else 1

if __name__ == "__main__":
    raise SystemExit(main())
