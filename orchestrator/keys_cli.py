"""``orchestrator keys create|list|revoke``: API keys, through the REST API of a running
orchestrator (``--url`` / DURABLE_ORCHESTRATOR_URL, with an ``admin`` key: ``--api-key`` /
DURABLE_API_KEY)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, get_args

import httpx

from orchestrator.engine.answers import Scope
from sdk.client import DEFAULT_URL


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kp = sub.add_parser("keys", help="create, list or revoke API keys (through the REST API)")
    kp.add_argument("--url", default=None, metavar="URL",
                    help=f"the orchestrator (DURABLE_ORCHESTRATOR_URL; default {DEFAULT_URL})")
    kp.add_argument("--api-key", default=None, metavar="KEY",
                    help="an admin API key (DURABLE_API_KEY)")
    ks = kp.add_subparsers(dest="keys_command", required=True)
    create = ks.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--scope", action="append", required=True, dest="scopes",
                        choices=get_args(Scope), help="a scope it grants; repeatable")
    ks.add_parser("list", help="list the keys (their prefixes, never the keys)")
    revoke = ks.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


def _call(args: argparse.Namespace, method: str, path: str, **kw: Any) -> httpx.Response:
    base = (args.url or os.environ.get("DURABLE_ORCHESTRATOR_URL") or DEFAULT_URL).rstrip("/")
    key = args.api_key or os.environ.get("DURABLE_API_KEY")
    if not key:
        raise SystemExit("orchestrator keys: set --api-key or DURABLE_API_KEY (an admin key)")
    try:
        r = httpx.request(method, f"{base}/api/v1{path}", timeout=30,
                          headers={"authorization": f"Bearer {key}"}, **kw)
    except httpx.HTTPError as exc:
        raise SystemExit(f"orchestrator keys: cannot reach {base}: {exc}") from None
    if r.status_code >= 400:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text
        raise SystemExit(f"orchestrator keys: {r.status_code} {message}")
    return r


def main(args: argparse.Namespace) -> None:
    if args.keys_command == "create":
        out = _call(args, "POST", "/keys", json={"name": args.name,
                                                 "scopes": args.scopes}).json()
        print(f"id      {out['id']}\nscopes  {' '.join(out['scopes'])}\nkey     {out['key']}")
        print("(the key is shown this once: keep it now)", file=sys.stderr)
    elif args.keys_command == "list":
        keys = _call(args, "GET", "/keys").json()["keys"]
        print(f"{'ID':<32}  {'PREFIX':<11}  {'SCOPES':<18}  {'CREATED':<27}  "
              f"{'LAST USED':<27}  {'REVOKED':<27}  NAME")
        for k in keys:
            print(f"{k['id']:<32}  {k['prefix']:<11}  {' '.join(k['scopes']):<18}  "
                  f"{k['created_at']:<27}  {k['last_used_at'] or '-':<27}  "
                  f"{k['revoked_at'] or '-':<27}  {k['name']}")
    else:
        _call(args, "DELETE", f"/keys/{args.key_id}")
        print(f"revoked {args.key_id}")
