"""A small client of the orchestrator's REST API, for the CLI's commands that manage it
(``orchestrator webhooks ...``, ``orchestrator keys ...``): the URL from ``--url`` or
``DURABLE_ORCHESTRATOR_URL``,
the key from ``--api-key`` or ``DURABLE_API_KEY``."""

from __future__ import annotations

import argparse
import os
from typing import Any, Final

import httpx

URL_VAR: Final = "DURABLE_ORCHESTRATOR_URL"
KEY_VAR: Final = "DURABLE_API_KEY"
DEFAULT_URL: Final = "http://127.0.0.1:8288"


class RestError(Exception):
    """The API refused a request (its error's code and message), or could not be reached."""


def add_client_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--url", default=None, metavar="URL",
                    help=f"the orchestrator ({URL_VAR}; default {DEFAULT_URL})")
    ap.add_argument("--api-key", default=None, metavar="KEY",
                    help=f"a REST API key ({KEY_VAR})")


class RestClient:
    def __init__(self, url: str, api_key: str, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + "/api/v1", timeout=30,
                                  headers={"authorization": f"Bearer {api_key}"},
                                  transport=transport)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RestClient:
        key = args.api_key or os.environ.get(KEY_VAR)
        if not key:
            raise RestError(f"give an API key: --api-key or {KEY_VAR}")
        return cls(args.url or os.environ.get(URL_VAR) or DEFAULT_URL, key)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON (None for 204), or ``RestError`` with the API's error."""
        try:
            r = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise RestError(f"cannot reach {self.url}: {exc}") from None
        if r.status_code == 204:
            return None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            field = f" (field {err['field']})" if err.get("field") else ""
            raise RestError(f"{r.status_code} {err.get('code', 'error')}: "
                            f"{err.get('message', r.text[:200])}{field}")
        return data

    def close(self) -> None:
        self._http.close()
