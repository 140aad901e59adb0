"""The SDK endpoint under attack, on a real uvicorn app: absurd timestamps, huge unsigned
bodies (refused before they are read), bodies past the limit, replayed requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sdk import protocol as p
from tests.support import procs

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[procs.Proc, str, Path]]:
    tmp = tmp_path_factory.mktemp("attacks")
    effects = tmp / "effects.log"
    proc, url = procs.app(tmp, extra_env={"TESTAPP_EFFECTS": str(effects),
                                          "TESTAPP_FLAGS": str(tmp)})
    proc.start()
    try:
        yield proc, url, effects
    finally:
        proc.stop()


def _connect(url: str) -> socket.socket:
    u = urlsplit(url)
    s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=10)
    return s


def _head(url: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {urlsplit(url).path} HTTP/1.1", "host: 127.0.0.1",
             "content-type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(sock: socket.socket, timeout: float) -> int:
    """The status of the response on ``sock``, waiting at most ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def _rss_kib(proc: procs.Proc) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_absurd_timestamp_is_a_401(app: tuple[procs.Proc, str, Path]) -> None:
    _, url, _ = app
    body = p.dumps(p.introspect_request())
    for ts in ["9" * 400, "-" + "9" * 400, "1e400", "nan", "1.5", "0x10"]:
        r = httpx.post(url, content=body, headers={p.H_TIMESTAMP: ts,
                                                   p.H_SIGNATURE: "A" * 43})
        assert r.status_code == 401, (ts, r.status_code, r.text)
        assert r.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("case", ["unsigned", "stale", "malformed signature"])
def test_an_unsigned_huge_post_is_refused_before_its_body_is_read(
    app: tuple[procs.Proc, str, Path], case: str
) -> None:
    _, url, _ = app
    now = str(int(time.time()))
    headers = {
        "unsigned": {},
        "stale": {p.H_TIMESTAMP: str(int(time.time()) - 3600), p.H_SIGNATURE: "A" * 43},
        "malformed signature": {p.H_TIMESTAMP: now, p.H_SIGNATURE: "not a signature!"},
    }[case]
    with _connect(url) as s:
        # announce 32 MiB, send 1 KiB of it: the answer must come without the rest
        s.sendall(_head(url, {"content-length": str(32 * MIB), **headers}) + b"x" * 1024)
        assert _status(s, timeout=3.0) == 401


def test_a_declared_body_past_the_limit_is_a_413_before_it_is_read(
    app: tuple[procs.Proc, str, Path]
) -> None:
    _, url, _ = app
    headers = p.Signer(procs.SIGNING_KEY).sign(b"whatever")
    with _connect(url) as s:
        s.sendall(_head(url, {"content-length": str(p.MAX_REQUEST_BYTES + 1), **headers}))
        assert _status(s, timeout=3.0) == 413


def test_a_streamed_body_past_the_limit_is_a_413_while_streaming(
    app: tuple[procs.Proc, str, Path]
) -> None:
    _, url, _ = app
    headers = p.Signer(procs.SIGNING_KEY).sign(b"whatever")
    sent = 0
    status: list[int] = []
    with _connect(url) as s:
        s.sendall(_head(url, {"transfer-encoding": "chunked", **headers}))
        chunk = b"x" * MIB
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"

        def read() -> None:
            status.append(_status(s, timeout=30.0))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            while not status and sent < 2 * p.MAX_REQUEST_BYTES:
                s.sendall(frame)
                sent += len(chunk)
        except OSError:  # the server closed the connection after answering
            pass
        reader.join(30)
    assert status == [413]
    assert sent < 2 * p.MAX_REQUEST_BYTES  # refused while streaming, not at the end


def test_concurrent_unsigned_huge_posts_do_not_grow_the_app(
    app: tuple[procs.Proc, str, Path]
) -> None:
    proc, url, _ = app
    before = _rss_kib(proc)
    blob = b"x" * (32 * MIB)
    statuses: list[int] = []

    def attack() -> None:
        with _connect(url) as s:
            s.sendall(_head(url, {"content-length": str(len(blob))}))
            try:
                s.sendall(blob)
            except OSError:
                pass  # refused and closed before the body was all sent
            statuses.append(_status(s, timeout=30.0))

    threads = [threading.Thread(target=attack) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = _rss_kib(proc)
    print(f"app RSS before {before} KiB, after 12 x 32 MiB unsigned POSTs {after} KiB")
    assert statuses == [401] * 12
    assert after - before < 32 * 1024, (before, after)  # not one body's worth (KiB)


def _invoke(call_id: str) -> bytes:
    return p.dumps(p.invoke_request(call_id=call_id, function="effects", run_id="run-replay",
                                    attempt=1, input=1, event=None, memo=[], budget_ms=5000))


def test_a_replayed_request_is_refused_and_runs_nothing(
    app: tuple[procs.Proc, str, Path]
) -> None:
    _, url, effects = app
    signer = p.Signer(procs.SIGNING_KEY)
    body = _invoke("run-replay:1")
    headers = {"content-type": "application/json", **signer.sign(body)}
    first = httpx.post(url, content=body, headers=headers)
    assert first.status_code == 200, first.text
    signer.verify(first.content, first.headers)
    ran = effects.read_text().count("run-replay") if effects.exists() else 0
    assert ran == 1
    for _ in range(3):  # the captured request, re-sent as is
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "replayed"
    # re-signed with a fresh timestamp, the same call id is still a replay
    r = httpx.post(url, content=body, headers=signer.sign(body))
    assert r.status_code == 409
    assert effects.read_text().count("run-replay") == 1
    # the next claim of the run has a new call id: it is answered
    nxt = _invoke("run-replay:2")
    r = httpx.post(url, content=nxt, headers=signer.sign(nxt))
    assert r.status_code == 200, r.text


async def test_a_request_waiting_for_a_pooled_connection_is_signed_when_sent(
    tmp_path: Path,
) -> None:
    """With a short window, a call that waited for a free connection (another call to the
    same app held it) must not arrive stale: it is signed when it is sent."""
    import asyncio

    from orchestrator.engine.invoker import Delivered, Invoker

    proc, url = procs.app(tmp_path, extra_env={"DURABLE_MAX_CLOCK_SKEW": "1"})
    proc.start()
    invoker = Invoker(p.Signer(procs.SIGNING_KEY), pool_size=1)
    try:
        def call(fn: str, call_id: str) -> bytes:
            return p.dumps(p.invoke_request(call_id=call_id, function=fn, run_id=call_id,
                                            attempt=1, input=1, event=None, memo=[],
                                            budget_ms=5000))

        slow = invoker.invoke(url, call("slow-step", "slow:1"), "slow:1")  # holds it 1.5 s
        quick = invoker.invoke(url, call("double", "quick:1"), "quick:1")
        outcomes = await asyncio.gather(slow, quick)
        assert all(isinstance(o, Delivered) for o in outcomes), outcomes
    finally:
        await invoker.close()
        proc.stop()
