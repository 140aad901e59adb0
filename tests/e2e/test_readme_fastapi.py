"""The README's app, in the FastAPI form it gives, registers with an orchestrator and
serves: FastAPI is installed with the dev extras, and the snippet is right."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.support import procs


def _fastapi_app_source() -> str:
    readme = (procs.ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                 if "app = Starlette(lifespan=lifespan" in b)
    para = readme[readme.index("With FastAPI"):]
    para = para[:para.index("\n\n")]
    spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", para)
             if s.startswith(("app = FastAPI(", "app.add_route("))]
    assert len(spans) == 2, para
    head = block[:block.index("app = Starlette(")]
    signup = '\napp.add_route("/signup", signup, methods=["POST"])\n'
    return "from fastapi import FastAPI\n" + head + "\n".join(spans) + signup


def test_the_readme_fastapi_app_registers_and_serves(tmp_path: Path) -> None:
    (tmp_path / "myapp_fastapi.py").write_text(_fastapi_app_source())
    orch, base = procs.orchestrator(tmp_path)
    orch.start()
    port = procs.free_port()
    app_url = f"http://127.0.0.1:{port}/api/durable"
    app = procs.Proc(
        [procs.sys.executable, "-m", "uvicorn", "myapp_fastapi:app", "--app-dir",
         str(tmp_path), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        {"DURABLE_SIGNING_KEY": procs.SIGNING_KEY, "DURABLE_API_KEY": procs.API_KEY,
         "DURABLE_ORCHESTRATOR_URL": base, "DURABLE_APP_ID": "my-app", "APP_URL": app_url},
        f"http://127.0.0.1:{port}/docs", tmp_path / "app.log")
    try:
        app.start()
        auth = {"authorization": f"Bearer {procs.API_KEY}"}
        deadline = time.monotonic() + 30
        names: set[str] = set()
        while time.monotonic() < deadline and "welcome-user" not in names:
            fns = httpx.get(f"{base}/api/v1/functions", headers=auth).json()
            names = {f["name"] for f in (fns.get("functions", fns) if isinstance(fns, dict)
                                         else fns)}
            time.sleep(0.2)
        assert {"welcome-user", "send-reminder"} <= names, app.log()
        r = httpx.post(f"http://127.0.0.1:{port}/signup", json={"user_id": "u-1"})
        assert r.status_code == 200, r.text
        run_id = r.json()["runs"][0]  # as the README shows: {"runs":["01a2..."]}
        run = httpx.get(f"{base}/api/v1/runs/{run_id}", headers=auth)
        assert run.status_code == 200 and run.json()["function"] == "welcome-user", (
            r.text, run.text)
    finally:
        app.stop()
        orch.stop()
