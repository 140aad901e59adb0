"""Real servers for tests: the orchestrator and apps as subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SIGNING_KEY = "test-signing-key-0123456789"
API_KEY = "test-api-key"


PORT_BLOCK = 2000
"""Ports each pytest-xdist worker hands out, from 10000 up: below the kernel's ephemeral
range (32768 and up here), so no worker's server, and no outgoing connection, can take a
port another worker just chose and has not bound yet."""
_next_port: list[int] = []


def free_port() -> int:
    """A port free on 127.0.0.1 now, from this worker's block (a random start per process:
    a harness run as a subprocess of a test draws from the same block as the test)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 10000 + (int(worker) % 10 if worker.isdigit() else 0) * PORT_BLOCK
    if not _next_port:
        _next_port.append(int.from_bytes(os.urandom(2), "big") % PORT_BLOCK)
    for _ in range(PORT_BLOCK):
        port = base + _next_port[0] % PORT_BLOCK
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or lingering): the next one
            return port
    raise RuntimeError(f"no free port in {base}..{base + PORT_BLOCK - 1}")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not come up within {timeout}s")


class Proc:
    """A server subprocess that can be stopped, killed -9 and started again."""

    def __init__(self, args: list[str], env: Mapping[str, str], health: str, log: Path) -> None:
        self.args = args
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.health = health
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Proc:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        wait_http(self.health, self.proc, timeout)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def orchestrator(tmp: Path, port: int | None = None, *, db_url: str | None = None,
                 app_url: str | None = None, extra_env: Mapping[str, str] | None = None,
                 lease_ttl: float | None = 2.0) -> tuple[Proc, str]:
    """An orchestrator process; ``lease_ttl`` is short for tests (crash takeovers are
    quick), None for the default (benchmarks)."""
    port = port or free_port()
    db_url = db_url or f"sqlite:///{tmp / 'orchestrator.db'}"
    args = [sys.executable, "-m", "orchestrator", "dev", "--port", str(port),
            "--database-url", db_url, "--log-level", "warning"]
    if lease_ttl is not None:
        args += ["--lease-ttl", str(lease_ttl)]
    if app_url:
        args += ["--app", app_url]
    env = {"DURABLE_SIGNING_KEY": SIGNING_KEY, "DURABLE_API_KEY": API_KEY,
           "DURABLE_DELIVERY_BACKOFF_MAX": "1", **(extra_env or {})}
    base = f"http://127.0.0.1:{port}"
    return Proc(args, env, f"{base}/healthz", tmp / f"orchestrator-{port}.log"), base


def app(tmp: Path, module: str = "tests.apps.testapp:app", port: int | None = None,
        extra_env: Mapping[str, str] | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    args = [sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1", "--port",
            str(port), "--log-level", "warning"]
    env = {"DURABLE_SIGNING_KEY": SIGNING_KEY, **(extra_env or {})}
    base = f"http://127.0.0.1:{port}"
    return Proc(args, env, f"{base}/", tmp / f"app-{port}.log"), f"{base}/api/durable"
