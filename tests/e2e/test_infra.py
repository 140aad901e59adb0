"""infra/ run for real: the image's entry point and health checks outside Docker, and the
local cluster (``infra.cluster``): runs through one replica read through another, a
replica killed and restarted, PostgreSQL restarted, and nothing left running after."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.cluster import Cluster
from tests.support.procs import API_KEY, ROOT, SIGNING_KEY, free_port
from tests.unit.test_infra import stage_config


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: this container's init may not reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def image_command(stage: str, port: int) -> list[str]:
    """The stage's ENTRYPOINT + CMD, as the image runs it, on this machine: its programs
    from this interpreter's environment, ``--port 8000`` moved to ``port``."""
    cfg = stage_config(stage)
    argv = [*cfg["entrypoint"], *cfg["cmd"]]
    bin_dir = Path(sys.executable).parent
    argv[0] = sys.executable if argv[0] == "python" else str(bin_dir / argv[0])
    return [str(port) if a == "8000" and argv[i - 1] == "--port" else a
            for i, a in enumerate(argv)]


def healthcheck(stage: str, port: int, env: dict[str, str]) -> int:
    """Run the stage's HEALTHCHECK command (the image's 8000 moved to ``port``)."""
    cmd = [a.replace(":8000/", f":{port}/") for a in stage_config(stage)["healthcheck"]]
    cmd[0] = sys.executable if cmd[0] == "python" else cmd[0]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=30).returncode


@pytest.fixture
def image_env() -> Iterator[dict[str, str]]:
    """The environment a container of the orchestrator image has (its ENV, then what
    compose or Kubernetes adds), this repository on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env.update(stage_config("orchestrator")["env"])
    env.update({"DURABLE_API_KEY": API_KEY, "DURABLE_SIGNING_KEY": SIGNING_KEY,
                "PYTHONPATH": str(ROOT)})
    yield env


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_image_entrypoint_serves_and_its_healthcheck_passes(
        request: pytest.FixtureRequest, tmp_path: Path, image_env: dict[str, str],
        db: str) -> None:
    port = free_port()
    url = (request.getfixturevalue("pg").create_db() if db == "postgres"
           else f"sqlite:///{tmp_path / 'image.db'}")
    # the container's env with this machine's port and database; its host (0.0.0.0) kept
    env = {**image_env, "DURABLE_PORT": str(port), "DURABLE_DATABASE_URL": url}
    assert image_command("orchestrator", port)[1:] == ["serve"]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(image_command("orchestrator", port), env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        # the check reads the port from the container's env (DURABLE_PORT)
        assert healthcheck("orchestrator", port, env) == 0
        # and fails when nothing answers there
        assert healthcheck("orchestrator", port, {**env, "DURABLE_PORT": str(free_port())}) != 0
        # the image logs JSON (DURABLE_LOG_FORMAT=json): one object a line
        assert (tmp_path / "serve.log").read_text().lstrip().startswith("{")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        log.close()


def test_example_app_image_command_serves(tmp_path: Path, image_env: dict[str, str]) -> None:
    port = free_port()
    env = {**image_env, "DURABLE_ORCHESTRATOR_URL": "http://127.0.0.1:1"}
    proc = subprocess.Popen(image_command("example-app", port), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while healthcheck("example-app", port, env) != 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert r.json()["durable_endpoint"] == "/api/durable"
    finally:
        proc.terminate()
        proc.wait(20)


def test_cluster_runs_through_one_replica_read_through_another(tmp_path: Path) -> None:
    cluster = Cluster(replicas=2, root=tmp_path / "cluster", lease_ttl=2.0)
    cluster.start()
    try:
        assert cluster.pg is not None
        assert {"fulfil-order", "send-notification"} <= set(cluster.functions)
        assert len(set(cluster.urls)) == 2
        headers = {"authorization": f"Bearer {cluster.api_key}"}
        r = httpx.post(f"{cluster.api(0)}/runs?wait=30", headers=headers, timeout=40,
                       json={"function": "send-notification", "input": {"to": "ada@x.io"}})
        assert r.status_code in (200, 201), r.text
        run = r.json()
        assert run["status"] == "completed", run
        seen = httpx.get(f"{cluster.api(1)}/runs/{run['id']}", headers=headers,
                         timeout=10).json()
        assert seen["status"] == "completed"
        assert seen["output"] == run["output"] == {"to": "ada@x.io", "channel": "email"}

        # a replica SIGKILLed comes back on its own port; runs still go through it
        old = cluster.replicas[1].pid
        cluster.kill_replica(1)
        assert old is not None and not alive(old)
        cluster.start_replica(1)
        assert cluster.replicas[1].pid != old
        # PostgreSQL crashes and comes back: both replicas are ready again, and serve
        cluster.restart_postgres("immediate")
        for i in range(2):
            deadline = time.monotonic() + 30
            while httpx.get(f"{cluster.urls[i]}/readyz", timeout=5).status_code != 200:
                assert time.monotonic() < deadline, f"replica {i} not ready again"
                time.sleep(0.2)
        r = httpx.post(f"{cluster.api(1)}/runs?wait=30", headers=headers, timeout=40,
                       json={"function": "send-notification", "input": {"to": "bo@x.io"}})
        assert r.json()["status"] == "completed", r.text
        assert httpx.get(f"{cluster.api(0)}/runs/{r.json()['id']}", headers=headers,
                         timeout=10).json()["output"]["to"] == "bo@x.io"

        pids = cluster.pids()
        assert len(pids) == 4  # 2 replicas, the app, the postmaster
        pg_dir = cluster.pg.root
    finally:
        cluster.stop()
    assert wait_gone(pids) == []
    assert not (pg_dir / "data").exists()
    logs = {p.name for p in (tmp_path / "cluster").iterdir()}
    assert {"replica-0.log", "replica-1.log", "app.log", "postgres.log"} <= logs


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cluster_command_stops_everything_on_a_signal(sig: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = []
    with subprocess.Popen([sys.executable, "-m", "infra.cluster", "--replicas", "1",
                           "--no-app", "--log-level", "warning"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line)
                if "Ctrl-C stops everything" in line:
                    break
            text = "".join(out)
            replica = re.search(r"replica 0\s+(http://127\.0\.0\.1:\d+)", text)
            folder = re.search(r"Logs in (\S+)\.", text)
            pg_port = re.search(r"postgresql://postgres@127\.0\.0\.1:(\d+)/", text)
            assert replica and folder and pg_port and "API key" in text, text
            assert httpx.get(f"{replica.group(1)}/readyz", timeout=5).status_code == 200
            proc.send_signal(sig)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{replica.group(1)}/healthz", timeout=2)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", int(pg_port.group(1))), timeout=2):
        pass
    assert not Path(folder.group(1)).exists(), "the temp folder is removed"
