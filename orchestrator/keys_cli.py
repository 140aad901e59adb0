"""``orchestrator keys create|list|revoke``: API keys, through the REST API of a running
orchestrator (``--url`` / DURABLE_ORCHESTRATOR_URL, with an ``admin`` key: ``--api-key`` /
DURABLE_API_KEY), with the CLI's one REST client (``rest_client``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, get_args

from orchestrator.engine.answers import Scope
from orchestrator.rest_client import RestClient, RestError, add_client_flags


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kp = sub.add_parser("keys", help="create, list or revoke API keys (through the REST API)")
    add_client_flags(kp)
    ks = kp.add_subparsers(dest="keys_command", required=True)
    create = ks.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--scope", action="append", required=True, dest="scopes",
                        choices=get_args(Scope), help="a scope it grants; repeatable")
    ks.add_parser("list", help="list the keys (their prefixes, never the keys)")
    revoke = ks.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


def main(args: argparse.Namespace) -> None:
    try:
        _run(args, RestClient.from_args(args))
    except RestError as exc:
        raise SystemExit(f"orchestrator keys: {exc}") from None


def _run(args: argparse.Namespace, client: RestClient) -> None:
    if args.keys_command == "create":
        out: Any = client.call("POST", "/keys", {"name": args.name, "scopes": args.scopes})
        print(f"id      {out['id']}\nscopes  {' '.join(out['scopes'])}\nkey     {out['key']}")
        print("(the key is shown this once: keep it now)", file=sys.stderr)
    elif args.keys_command == "list":
        keys = client.call("GET", "/keys")["keys"]
        print(f"{'ID':<32}  {'PREFIX':<11}  {'SCOPES':<18}  {'CREATED':<27}  "
              f"{'LAST USED':<27}  {'REVOKED':<27}  NAME")
        for k in keys:
            print(f"{k['id']:<32}  {k['prefix']:<11}  {' '.join(k['scopes']):<18}  "
                  f"{k['created_at']:<27}  {k['last_used_at'] or '-':<27}  "
                  f"{k['revoked_at'] or '-':<27}  {k['name']}")
    else:
        client.call("DELETE", f"/keys/{args.key_id}")
        print(f"revoked {args.key_id}")
