"""``orchestrator apps ...``: manage registered apps through the REST API of a running
orchestrator (``--url`` / ``DURABLE_ORCHESTRATOR_URL``, with ``DURABLE_API_KEY``).

``register URL [--generate-key] [--budget-ms MS]`` registers (or re-syncs) the app at
URL (with the app's own key from ``DURABLE_APP_SIGNING_KEY``, if set), printing its
answer, and the generated key, if asked for one, on the last line;
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

from orchestrator.rest_client import RestClient, RestError, add_client_flags

API: str = "/api/v1"


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
    add_client_flags(ap)
    cmds = ap.add_subparsers(dest="apps_command", required=True)
    reg = cmds.add_parser("register", help="register or re-sync the app at URL")
    reg.add_argument("app_url", metavar="URL")  # (--url is the orchestrator's)
    reg.add_argument("--generate-key", action="store_true",
                     help="also give the app a signing key of its own (printed once)")
    reg.add_argument("--budget-ms", type=int, default=None,
                     help="the app's time budget per call, in ms")
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
    if args.apps_command == "register":
        body: dict[str, Any] = {"url": args.app_url}
        own = os.environ.get("DURABLE_APP_SIGNING_KEY")
        if own:
            body["signing_key"] = own
        if args.generate_key:
            body["generate_key"] = True
        if args.budget_ms is not None:
            body["budget_ms"] = args.budget_ms
        return "POST", f"{API}/apps", body
    app = quote(args.app, safe="")
    if args.apps_command == "rotate-key":
        key = args.key or os.environ.get("DURABLE_NEW_SIGNING_KEY")
        return "POST", f"{API}/apps/{app}/keys", {"key": key} if key else None
    if args.apps_command == "drop-fallback":
        return "DELETE", f"{API}/apps/{app}/keys/fallback", None
    return "PATCH", f"{API}/apps/{app}", {"budget_ms": args.ms}


def run(args: argparse.Namespace) -> int:
    """Make the call (with the CLI's REST client); print its answer (the new key for
    ``rotate-key``). The exit status is 0 on success, 1 if the orchestrator refused or
    could not be reached."""
    method, path, body = request(args)
    try:
        out = RestClient.from_args(args).call(method, path.removeprefix(API), body)
    except RestError as exc:
        print(f"orchestrator apps: {exc}", file=sys.stderr)
        return 1
    if args.apps_command == "rotate-key":
        print(out["signing_key"])
    elif out is not None:
        key = out.pop("signing_key", None) if isinstance(out, dict) else None
        print(json.dumps(out, indent=2))
        if key is not None:
            print(key)
    return 0
