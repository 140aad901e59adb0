"""Plain-http app URLs: accepted on loopback and private networks, refused (422 naming
``url``) on public addresses unless the orchestrator is told to allow them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.engine.registration import check_app_url
from orchestrator.errors import Invalid
from tests.support import procs

PUBLIC = "http://93.184.216.34:9/api/durable"  # a public address; nothing listens there


def _register(base: str, url: str) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/apps", json={"url": url}, timeout=30,
                      headers={"authorization": f"Bearer {procs.API_KEY}"})


@pytest.fixture
def orchestrator(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    env = {"DURABLE_ALLOW_INSECURE_APP_URLS": "1"} if request.param else {}
    proc, base = procs.orchestrator(tmp_path, extra_env=env)
    proc.args += ["--call-timeout", "1"]  # an unreachable app fails registration quickly
    proc.start()
    try:
        yield base
    finally:
        proc.stop()


@pytest.mark.parametrize("orchestrator", [False], indirect=True)
def test_plain_http_to_a_public_address_is_refused(orchestrator: str) -> None:
    r = _register(orchestrator, PUBLIC)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "url"
    assert "plain http" in err["message"] and "--allow-insecure-apps" in err["message"]
    # a private address passes the policy (and then fails: nothing answers there)
    r = _register(orchestrator, "http://10.255.255.1:9/api/durable")
    assert r.status_code == 422, r.text
    assert "plain http" not in r.json()["error"]["message"]  # tried, not refused


@pytest.mark.parametrize("orchestrator", [True], indirect=True)
def test_plain_http_to_a_public_address_when_allowed(orchestrator: str) -> None:
    r = _register(orchestrator, PUBLIC)
    assert r.status_code == 422, r.text
    assert "plain http" not in r.json()["error"]["message"]  # tried, not refused


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/x", "http://[::1]:8000/x", "http://localhost/x",
    "http://app.localhost/x", "http://10.1.2.3/x", "http://172.16.0.9/x",
    "http://192.168.1.10/x", "http://169.254.1.1/x", "http://[fd00::1]/x",
    "https://93.184.216.34/x", "https://example.invalid/x",
])
async def test_accepted_app_urls(url: str) -> None:
    await check_app_url(url, allow_insecure=False)


@pytest.mark.parametrize("url", [
    "http://93.184.216.34/x", "http://8.8.8.8:80/x", "http://[2001:4860::8888]/x",
    "http://[::ffff:8.8.8.8]/x", "http://no-such-host.invalid/x",
])
async def test_refused_app_urls(url: str) -> None:
    with pytest.raises(Invalid) as exc:
        await check_app_url(url, allow_insecure=False)
    assert exc.value.field == "url"
    await check_app_url(url, allow_insecure=True)
