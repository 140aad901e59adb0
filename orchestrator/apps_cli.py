"""``orchestrator apps ...``: manage registered apps through the REST API of a running
orchestrator (``--url`` / ``DURABLE_ORCHESTRATOR_URL``, with ``DURABLE_API_KEY``).

``rotate-key APP [--key K]`` makes K (absent: a generated key) the app's primary signing
key and keeps the old one as fallback, printing the new key; ``drop-fallback APP`` stops
accepting the old one; ``budget APP MS|default`` sets the app's time budget per call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8288"


def _budget(v: str) -> int | None:
    if v == "default":
        return None
    try:
        ms = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number of ms or 'default'") from None
    return ms


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``apps`` command group to ``sub`` (the CLI's subcommands)."""
    ap = sub.add_parser(
        "apps", help="manage registered apps (signing keys, time budget) over the REST API")
    ap.add_argument("--url", default=None, metavar="URL",
                    help="the orchestrator's base URL (DURABLE_ORCHESTRATOR_URL; default "
                         f"{DEFAULT_URL}); the API key is DURABLE_API_KEY")
    cmds = ap.add_subparsers(dest="apps_command", required=True)
    rotate = cmds.add_parser("rotate-key", help="give APP a new primary signing key (given "
                                                "or generated), keep the old as fallback")
    rotate.add_argument("app")
    rotate.add_argument("--key", default=None,
                        help="the new key (default: generated); prefer the environment "
                             "variable DURABLE_NEW_SIGNING_KEY, kept out of `ps`")
    drop = cmds.add_parser("drop-fallback", help="stop accepting APP's fallback key")
    drop.add_argument("app")
    budget = cmds.add_parser("budget", help="set APP's time budget per call, in ms")
    budget.add_argument("app")
    budget.add_argument("ms", type=_budget, help="milliseconds, or 'default'")


def request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The REST call ``args`` asks for: (method, path, JSON body)."""
    app = quote(args.app, safe="")
    if args.apps_command == "rotate-key":
        key = args.key or os.environ.get("DURABLE_NEW_SIGNING_KEY")
        return "POST", f"/api/v1/apps/{app}/keys", {"key": key} if key else None
    if args.apps_command == "drop-fallback":
        return "DELETE", f"/api/v1/apps/{app}/keys/fallback", None
    return "PATCH", f"/api/v1/apps/{app}", {"budget_ms": args.ms}


def run(args: argparse.Namespace) -> int:
    """Make the call; print its answer (the new key for ``rotate-key``). The exit status
    is 0 on success, 1 if the orchestrator refused, 2 if it could not be reached."""
    base = (args.url or os.environ.get("DURABLE_ORCHESTRATOR_URL") or DEFAULT_URL).rstrip("/")
    headers = {"authorization": f"Bearer {os.environ.get('DURABLE_API_KEY', '')}"}
    method, path, body = request(args)
    try:
        r = httpx.request(method, base + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"orchestrator apps: could not reach {base}: {exc}", file=sys.stderr)
        return 2
    if r.status_code >= 400:
        print(f"orchestrator apps: HTTP {r.status_code}: {r.text}", file=sys.stderr)
        return 1
    if args.apps_command == "rotate-key":
        print(r.json()["signing_key"])
    elif r.content:
        print(json.dumps(r.json(), indent=2))
    return 0
