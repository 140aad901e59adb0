"""The orchestrator keeps an idle client connection open longer than clients keep
theirs (httpx: 5 s), so a request sent on a kept-alive connection is not lost to the
server closing it at the same moment (bench/keepalive.py measures the errors)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support import procs

REQUEST = (b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")


def _answer(sock: socket.socket) -> bytes:
    """One whole response: its head, then ``content-length`` bytes of body (a body may
    arrive in a later segment than its head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_idle_connection_outlives_httpx_keep_alive_expiry(tmp_path: Path) -> None:
    orch, base = procs.orchestrator(tmp_path)
    orch.start()
    try:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            time.sleep(6.0)  # idle longer than httpx keeps a connection (5 s)
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
    finally:
        orch.stop()
