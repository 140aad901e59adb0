"""Settings through the real CLI: a bad value is refused in one line naming it, before
anything starts; a ``.env`` file configures ``orchestrator serve``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.procs import ROOT, free_port, wait_http


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _refused(tmp: Path, *args: str, **env: str) -> str:
    p = subprocess.run([sys.executable, "-m", "orchestrator", *args], env=_env(**env),
                       cwd=tmp, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_a_bad_variable_is_refused_in_one_line(tmp_path: Path) -> None:
    out = _refused(tmp_path, "dev", "--database-url", f"sqlite:///{tmp_path}/x.db",
                   DURABLE_CALL_TIMEOUT="abc")
    assert out == "orchestrator: DURABLE_CALL_TIMEOUT: input should be a valid number, got 'abc'"
    assert not (tmp_path / "x.db").exists()  # refused before anything started


@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_bad_flag_is_refused_in_one_line(tmp_path: Path, command: str) -> None:
    out = _refused(tmp_path, command, "--lease-ttl", "-2", DURABLE_API_KEY="k",
                   DURABLE_SIGNING_KEY="s", DURABLE_DATABASE_URL="sqlite:///x.db")
    assert out == "orchestrator: --lease-ttl: input should be greater than 0, got '-2'"


def test_a_bad_value_in_dotenv_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DURABLE_PORT=http\n")
    out = _refused(tmp_path, "dev")
    assert out == ("orchestrator: DURABLE_PORT (in .env): input should be a valid integer, "
                   "got 'http'")


def test_a_missing_env_file_is_refused(tmp_path: Path) -> None:
    out = _refused(tmp_path, "serve", "--env-file", "prod.env")
    assert out == "orchestrator: --env-file: no such file: prod.env"


def test_serve_configured_by_an_env_file(tmp_path: Path) -> None:
    port = free_port()
    env_file = tmp_path / "prod.env"
    env_file.write_text(f"DURABLE_DATABASE_URL=sqlite:///{tmp_path}/prod.db\n"
                        "DURABLE_API_KEYS=key-a,key-b\nDURABLE_SIGNING_KEY=sign-0123456789\n"
                        "DURABLE_PORT=1\n")  # the flag wins over it
    log = open(tmp_path / "serve.log", "wb")
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port),
                          "--env-file", str(env_file), "--log-level", "WARNING"],
                         env=_env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", p, timeout=30)
        for key, status in (("key-b", 200), ("nope", 401)):
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/runs",
                          headers={"authorization": f"Bearer {key}"})
            assert r.status_code == status, r.text
        assert (tmp_path / "prod.db").exists()
    finally:
        p.terminate()
        p.wait(15)
