"""``make run`` (the examples.functions.dev launcher) and ``orchestrator dev`` started
directly: stopping, where the dev keys live, who may read them, refusing to start."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.procs import ROOT, free_port, wait_http


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _port_free(port: int) -> bool:
    with socket.socket() as s:  # free to listen on again, as a server binds it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is gone too
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _dev(tmp: Path, port: int, *extra: str, db: Path | None = None,
         log: str = "orch.log") -> subprocess.Popen[bytes]:
    db = db or tmp / "state" / "dev.db"
    out = open(tmp / log, "ab")
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "dev", "--port", str(port),
                          "--database-url", f"sqlite:///{db}", *extra],
                         env=_env(), cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return p


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        p.wait(15)


def test_sigterm_to_the_launcher_stops_the_orchestrator_and_the_app(tmp_path: Path) -> None:
    orch_port, app_port = free_port(), free_port()
    log = open(tmp_path / "launcher.log", "wb")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "examples.functions.dev", "--state-dir",
         str(tmp_path / "state"), "--port", str(orch_port), "--app-port", str(app_port)],
        env=_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{orch_port}/readyz", launcher, timeout=30)
        wait_http(f"http://127.0.0.1:{app_port}/", launcher, timeout=30)
        children = _children(launcher.pid)
        assert len(children) == 2, children
        launcher.send_signal(signal.SIGTERM)  # as a process manager stops it
        assert launcher.wait(20) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.1)
        assert [c for c in children if _alive(c)] == []
        assert _port_free(orch_port) and _port_free(app_port)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for c in _children(launcher.pid) if launcher.poll() is None else []:
            os.kill(c, signal.SIGKILL)
    assert (tmp_path / "state" / "dev-keys.env").exists()


def test_dev_keeps_its_keys_beside_its_database_private(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    first = _dev(tmp_path, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", first)
        keys_file = state / "dev-keys.env"
        keys = dict(line.split("=", 1) for line in keys_file.read_text().splitlines())
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/runs",
                      headers={"authorization": f"Bearer {keys['DURABLE_API_KEY']}"})
        assert r.status_code == 200, r.text
    finally:
        _stop(first)
    banner = (tmp_path / "orch.log").read_text()
    assert keys["DURABLE_SIGNING_KEY"] not in banner  # printed only when asked
    assert _mode(state) == 0o700
    files = [f for f in state.iterdir()]
    assert {f.name for f in files} >= {"dev-keys.env", "dev.db", "dev.db.lock"}
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}

    second = _dev(tmp_path, port, "--show-keys", log="orch2.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", second)
        assert keys_file.read_text().splitlines() == [f"{k}={v}" for k, v in keys.items()]
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/runs",
                      headers={"authorization": f"Bearer {keys['DURABLE_API_KEY']}"})
        assert r.status_code == 200, r.text  # the same keys after a restart
    finally:
        _stop(second)
    assert keys["DURABLE_SIGNING_KEY"] in (tmp_path / "orch2.log").read_text()


def test_dev_tightens_an_existing_world_readable_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    sqlite3.connect(state / "dev.db").close()
    (state / "dev.db").chmod(0o644)
    port = free_port()
    p = _dev(tmp_path, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", p)
        assert _mode(state) == 0o700
        assert {f.name: _mode(f) for f in state.iterdir()} == {
            f.name: 0o600 for f in state.iterdir()}
    finally:
        _stop(p)


def _refusal(tmp: Path, db: Path) -> str:
    p = subprocess.run([sys.executable, "-m", "orchestrator", "dev", "--port",
                        str(free_port()), "--database-url", f"sqlite:///{db}"],
                       env=_env(), cwd=tmp, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    out = (p.stdout + p.stderr).strip()
    assert "Traceback" not in out
    assert len(out.splitlines()) == 1, out
    return out


def test_a_second_orchestrator_on_the_same_file_says_why_in_one_line(tmp_path: Path
                                                                     ) -> None:
    port = free_port()
    first = _dev(tmp_path, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", first)
        out = _refusal(tmp_path, tmp_path / "state" / "dev.db")
        assert "another orchestrator is using" in out
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    finally:
        _stop(first)


def test_an_old_schema_version_says_why_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")  # version 1: no meta table
    out = _refusal(tmp_path, db)
    assert "schema version 1" in out


def test_the_launcher_refuses_a_bad_port_in_one_line(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "examples.functions.dev", "--state-dir",
                        str(tmp_path / "state")], env=_env(DURABLE_PORT="eighty"),
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip() == ("python -m examples.functions.dev: DURABLE_PORT: input "
                                "should be a valid integer, got 'eighty'")
    assert not (tmp_path / "state").exists()  # nothing was started
