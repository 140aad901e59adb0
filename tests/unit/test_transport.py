"""The SDK's lean HTTP/1.1 transport (sdk/transport.py), and the invoker's pool over it,
against real sockets on 127.0.0.1: raw asyncio servers that answer exactly what each case
needs."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from orchestrator.engine.invoker import Delivered, Failed, Invoker
from orchestrator.engine.pool import ClientPool
from sdk import Client, transport
from sdk import protocol as p
from sdk.transport import AppTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    first, *lines = head[:-4].split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(b":", 1) for ln in lines)}
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return first, headers, body


def response(body: bytes, status: int = 200, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            % (status, len(body)) + extra + b"\r\n" + body)


@asynccontextmanager
async def server(handler: Handler, tls: ssl.SSLContext | None = None
                 ) -> AsyncIterator[tuple[str, list[int]]]:
    """Serve ``handler`` per connection; yield the base URL and the clients' ports seen."""
    peers: list[int] = []

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        peers.append(w.get_extra_info("peername")[1])
        try:
            await handler(r, w)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=tls)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", peers
    finally:
        srv.close()
        await srv.wait_closed()


async def echo_forever(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Keep-alive: answer every request with its own first line and body."""
    while True:
        first, _, body = await read_request(r)
        w.write(response(first + b"|" + body))
        await w.drain()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    t = AppTransport()
    async with httpx.AsyncClient(transport=t, timeout=5) as c:
        yield c


async def test_requests_reuse_one_kept_alive_connection(client: httpx.AsyncClient) -> None:
    async with server(echo_forever) as (url, peers):
        for i in range(3):
            r = await client.post(f"{url}/call?x={i}", content=b"body%d" % i)
            assert r.status_code == 200
            assert r.content == b"POST /call?x=%d HTTP/1.1|body%d" % (i, i)
            assert r.headers["content-type"] == "application/json"
        assert len(peers) == 1


async def test_concurrent_requests_open_one_connection_each_and_reuse_them(
        client: httpx.AsyncClient) -> None:
    async with server(echo_forever) as (url, peers):
        for _ in range(3):
            rs = await asyncio.gather(*(client.post(url, content=b"%d" % i) for i in range(4)))
            assert sorted(r.content.split(b"|")[1] for r in rs) == [b"0", b"1", b"2", b"3"]
        assert len(peers) == 4


async def test_large_bodies_both_ways(client: httpx.AsyncClient) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        _, _, body = await read_request(r)
        w.write(response(body * 5))
        await w.drain()

    async with server(handler) as (url, _):
        r = await client.post(url, content=big)
        assert r.content == big * 5


async def test_a_streamed_request_body_is_sent_with_its_length(
        client: httpx.AsyncClient) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for chunk in (b"one ", b"two ", b"three"):
            yield chunk

    seen: list[dict[bytes, bytes]] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        _, headers, body = await read_request(r)
        seen.append(headers)
        w.write(response(body))
        await w.drain()

    async with server(handler) as (url, _):
        r = await client.post(url, content=parts())
        assert r.content == b"one two three"
    assert b"transfer-encoding" not in seen[0] and seen[0][b"content-length"] == b"13"


async def test_chunked_and_close_delimited_bodies(client: httpx.AsyncClient) -> None:
    async def chunked(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await w.drain()

    async def until_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await w.drain()

    async with server(chunked) as (url, _):
        assert (await client.get(url)).content == b"hello world"
    async with server(until_close) as (url, _):
        r = await client.get(url)
        assert (r.status_code, r.content) == (200, b"all of it")


async def test_an_informational_answer_is_skipped(client: httpx.AsyncClient) -> None:
    async def early_hints(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            w.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")
            await w.drain()
            await asyncio.sleep(0.05)
            w.write(response(b"final"))
            await w.drain()

    async with server(early_hints) as (url, peers):
        for _ in range(2):
            r = await client.get(url)
            assert (r.status_code, r.content) == (200, b"final")
            assert "link" not in r.headers
        assert len(peers) == 1


async def test_connection_close_is_honoured(client: httpx.AsyncClient) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            w.write(response(b"x", extra=b"connection: close\r\n"))
            await w.drain()

    async with server(handler) as (url, peers):
        for _ in range(2):
            assert (await client.get(url)).content == b"x"
        assert len(peers) == 2  # a new connection for the second request


async def test_a_connection_idle_too_long_is_not_reused(
        client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "KEEPALIVE_EXPIRY", 0.2)
    async with server(echo_forever) as (url, peers):
        await client.get(url)
        await client.get(url)
        assert len(peers) == 1
        await asyncio.sleep(0.3)
        await client.get(url)
        assert len(peers) == 2


async def test_an_idle_connection_the_server_closed_is_replaced_transparently(
        client: httpx.AsyncClient) -> None:
    async def one_per_connection(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        first, _, _ = await read_request(r)
        w.write(response(first))  # keep-alive promised...
        await w.drain()
        await read_request(r)  # ...but the next request is read and dropped (a request cap)

    async with server(one_per_connection) as (url, peers):
        for _ in range(3):
            assert (await client.post(url, content=b"")).status_code == 200
        assert len(peers) == 3


async def test_a_server_that_closes_without_answering_a_new_connection_fails(
        client: httpx.AsyncClient) -> None:
    async def rude(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)

    async with server(rude) as (url, _):
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post(url, content=b"x")


async def test_a_response_cut_short_is_a_read_error(client: httpx.AsyncClient) -> None:
    async def cut(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await w.drain()

    async with server(cut) as (url, _):
        with pytest.raises(httpx.ReadError, match="middle of the response"):
            await client.get(url)


async def test_a_malformed_response_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"NOT HTTP AT ALL\r\n\r\n")
        await w.drain()
        await asyncio.sleep(1)

    async with server(garbage) as (url, _):
        with pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP response"):
            await client.get(url)


async def test_an_oversized_response_is_refused(client: httpx.AsyncClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_RESPONSE_BYTES", 1000)

    async def huge(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(response(b"z" * 5000))
        await w.drain()
        await asyncio.sleep(1)

    async with server(huge) as (url, _):
        with pytest.raises(httpx.ReadError, match="exceeds 1000 bytes"):
            await client.get(url)


async def test_a_slow_answer_times_out_and_its_connection_is_dropped() -> None:
    async def slow_then_fast(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        first, _, _ = await read_request(r)
        if b"slow" in first:
            await asyncio.sleep(2)
        w.write(response(b"ok"))
        await w.drain()
        await echo_forever(r, w)

    t = AppTransport()
    async with httpx.AsyncClient(transport=t, timeout=0.3) as c, \
            server(slow_then_fast) as (url, peers):
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"{url}/slow")
        assert (await c.get(f"{url}/fast")).content == b"ok"
        assert len(peers) == 2  # the timed-out connection was not reused


async def test_cancelling_a_request_drops_its_connection(client: httpx.AsyncClient) -> None:
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        first, _, _ = await read_request(r)
        if b"slow" in first:
            await asyncio.sleep(2)
        w.write(response(b"ok"))
        await w.drain()
        await echo_forever(r, w)

    async with server(slow) as (url, peers):
        task = asyncio.ensure_future(client.get(f"{url}/slow"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.get(f"{url}/fast")).content == b"ok"
        assert len(peers) == 2


async def test_connection_refused_is_a_connect_error(client: httpx.AsyncClient) -> None:
    async with server(echo_forever) as (url, _):
        pass  # closed: nothing listens on that port any more
    with pytest.raises(httpx.ConnectError, match="could not connect"):
        await client.get(url)


async def test_unsupported_scheme(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await client.get("ftp://127.0.0.1/x")


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return key, cert


async def test_https_with_server_name_check(self_signed: tuple[Path, Path]) -> None:
    key, cert = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async with server(echo_forever, tls=server_ctx) as (url, peers):
        async with httpx.AsyncClient(transport=AppTransport(lambda: trusting)) as c:
            for _ in range(2):
                r = await c.post(f"{url}/tls", content=b"secret")
                assert r.content == b"POST /tls HTTP/1.1|secret"
        assert len(peers) == 1
        # a client that does not trust the certificate refuses the server
        async with httpx.AsyncClient(transport=AppTransport()) as c:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await c.get(url)


def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_in_the_environment_means_httpx_s_own_transport(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy(monkeypatch)
    assert isinstance(transport.lean_transport(), AppTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert transport.lean_transport() is None  # httpx honours the proxy, as it always did


async def test_the_invoker_s_pool_uses_httpx_s_own_transport_under_a_proxy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy(monkeypatch)
    assert isinstance(ClientPool(2, timeout=httpx.Timeout(5)).transport, AppTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # httpx's own, and it goes direct here
    pool = ClientPool(2, timeout=httpx.Timeout(5))
    assert pool.transport is None
    async with server(echo_forever) as (url, _):
        async with pool.client(url) as c:
            assert (await c.post(url, content=b"x")).content == b"POST / HTTP/1.1|x"
    await pool.aclose()


# -- exactly one layer sends a POST twice --------------------------------------------------------

KEY = "shared-secret"


def _call(call_id: str) -> bytes:
    return p.dumps(p.invoke_request(call_id=call_id, function="f", run_id="r", attempt=1,
                                    input=None, event=None, memo=[], budget_ms=1000))


def _signed_answer(call_id: str) -> bytes:
    body = p.dumps({"v": p.VERSION, "call_id": call_id, "status": "complete", "output": 1,
                    "steps": [], "events": []})
    head = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                    for k, v in p.Signer(KEY).sign(body).items())
    return response(body, extra=head)


async def test_a_call_is_sent_at_most_twice_and_only_by_the_transport(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one documented re-send (docs/architecture.md, "Delivery failures and retries"):
    a kept-alive connection closed before any answer. The app here answers the first call
    it ever sees and closes every later connection on reading the request."""
    _no_proxy(monkeypatch)
    seen: list[tuple[int, bytes]] = []  # (connection number, body) of every POST read
    conns = 0

    async def first_call_only(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal conns
        conns += 1
        me = conns
        while True:
            _, _, body = await read_request(r)
            seen.append((me, body))
            if len(seen) > 1:
                return  # read, never answered: the connection closes
            w.write(_signed_answer("call-1"))  # keep-alive: the connection stays open
            await w.drain()

    inv = Invoker(p.Signer(KEY), timeout=5.0)
    try:
        async with server(first_call_only) as (url, _):
            assert isinstance(await inv.invoke(url, _call("call-1"), "call-1"), Delivered)
            assert len(seen) == 1
            # on the kept-alive connection, then once on a fresh one; then it fails
            outcome = await inv.invoke(url, _call("call-2"), "call-2")
            assert isinstance(outcome, Failed)
            assert "RemoteProtocolError" in outcome.reason
            assert seen[1:] == [(1, _call("call-2")), (2, _call("call-2"))]
            # a fresh connection closed without an answer: sent once, never again
            outcome = await inv.invoke(url, _call("call-3"), "call-3")
            assert isinstance(outcome, Failed)
            assert seen[3:] == [(3, _call("call-3"))]
    finally:
        await inv.close()


# -- the SDK's client: httpx's own transport unless it opts in -----------------------------------


async def test_the_client_bounds_an_opted_in_lean_transport_to_max_connections() -> None:
    open_now = most = 0

    async def slow_echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            await echo_forever(r, w)
        finally:
            open_now -= 1

    async with server(slow_echo) as (url, peers):
        client = Client(orchestrator_url=url, transport=AppTransport(), max_connections=2)
        try:
            got = await asyncio.gather(*(client.get_run(f"r{i}") for i in range(6)))
            assert got == [f"GET /api/v1/runs/r{i} HTTP/1.1|" for i in range(6)]
            assert len(peers) <= 2 and most <= 2  # kept-alive connections, reused
        finally:
            await client.aclose()


SDK_WITHOUT_HTTPTOOLS = """
import asyncio, sys
sys.modules["httptools"] = None  # a FaaS bundle without it
import sdk
assert "sdk.transport" not in sys.modules, "import sdk loaded the lean transport"
client = sdk.Client(orchestrator_url=sys.argv[1])
print(asyncio.run(client.get_run("r1")))
"""


async def test_the_client_speaks_httpx_s_own_transport_without_httptools() -> None:
    async with server(echo_forever) as (url, _):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SDK_WITHOUT_HTTPTOOLS, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "GET /api/v1/runs/r1 HTTP/1.1|"
