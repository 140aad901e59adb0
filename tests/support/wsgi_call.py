"""One request to a WSGI app in process, with the environ a WSGI server builds."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any


def wsgi_call(app: Any, method: str, body: bytes, headers: Mapping[str, str],
              path: str = "/api/durable") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of ``app``'s answer to one request."""
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
           "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
           **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}}
    if "content-type" in {k.lower() for k in headers}:
        env["CONTENT_TYPE"] = env.pop("HTTP_CONTENT_TYPE")
    got: list[tuple[str, list[tuple[str, str]]]] = []
    out = b"".join(app(env, lambda status, hdrs: got.append((status, hdrs))))
    status, hdrs = got[0]
    return int(status.split()[0]), dict(hdrs), out
