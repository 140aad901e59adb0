"""``orchestrator webhooks create|list|get|rotate|delete``: webhook sources managed through
the REST API (``rest_client``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, get_args

from orchestrator.engine import answers as a
from orchestrator.rest_client import RestClient, RestError, add_client_flags


def add_parser(sub: Any) -> None:
    """The ``webhooks`` command on ``sub`` (the CLI's subparsers)."""
    common = argparse.ArgumentParser(add_help=False)
    add_client_flags(common)
    wp = sub.add_parser("webhooks", help="manage webhook sources (through the REST API)")
    act = wp.add_subparsers(dest="action", required=True)
    c = act.add_parser("create", parents=[common], help="create a source; prints its "
                                                        "secret (once) and path")
    c.add_argument("--kind", required=True,
                   choices=get_args(a.WebhookKind))
    c.add_argument("--secret", help="the shared secret (default: one is made; Stripe's "
                                    "and Slack's are theirs)")
    ev = c.add_mutually_exclusive_group()
    ev.add_argument("--event-header", metavar="NAME", help="the event name is this header")
    ev.add_argument("--event-field", metavar="PATH", help="... this dotted body field")
    ev.add_argument("--event-constant", metavar="NAME", help="... this constant")
    c.add_argument("--event-prefix", default="", metavar="PREFIX",
                   help="put before the event name (e.g. 'github.')")
    ids = c.add_mutually_exclusive_group()
    ids.add_argument("--id-header", metavar="NAME", help="the delivery id is this header")
    ids.add_argument("--id-field", metavar="PATH", help="... this dotted body field")
    ids.add_argument("--no-id", action="store_true", help="no delivery id (no dedup)")
    c.add_argument("--sig-header", help="generic: the signature's header")
    c.add_argument("--algorithm", choices=get_args(a.HashAlgorithm))
    c.add_argument("--encoding", choices=get_args(a.DigestEncoding))
    c.add_argument("--sig-prefix", help="generic: the signature starts with this")
    c.add_argument("--tolerance", type=float, help="stripe/slack: timestamp tolerance (s)")
    act.add_parser("list", parents=[common], help="list sources")
    for name, help_ in (("get", "show a source"), ("delete", "delete a source")):
        act.add_parser(name, parents=[common], help=help_).add_argument("id")
    r = act.add_parser("rotate", parents=[common], help="rotate a source's secret; prints "
                                                        "the new one (once)")
    r.add_argument("id")
    r.add_argument("--secret", help="the new secret (default: one is made)")
    r.add_argument("--grace", type=float, metavar="SECONDS",
                   help="accept the old secret this long (default 86400; 0: not at all)")


def _rule(source: str, key: str | None, prefix: str | None = None) -> dict[str, str]:
    out = {"source": source, "key": key or ""}
    if prefix is not None:
        out["prefix"] = prefix
    return out


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /webhooks`` body of ``create``'s flags."""
    body: dict[str, Any] = {"kind": args.kind}
    if args.secret:
        body["secret"] = args.secret
    for source in ("header", "field", "constant"):
        key = getattr(args, f"event_{source}")
        if key:
            body["event"] = _rule(source, key, args.event_prefix)
    if args.no_id:
        body["delivery_id"] = _rule("none", None)
    for source in ("header", "field"):
        key = getattr(args, f"id_{source}")
        if key:
            body["delivery_id"] = _rule(source, key)
    sig = {k: v for k, v in (("header", args.sig_header), ("algorithm", args.algorithm),
                             ("encoding", args.encoding), ("prefix", args.sig_prefix))
           if v is not None}
    if sig:
        body["signature"] = sig
    if args.tolerance is not None:
        body["tolerance"] = args.tolerance
    return body


def run(args: argparse.Namespace, client: RestClient | None = None) -> Any:
    """Do ``args.action``; the API's answer (None for a delete)."""
    client = client or RestClient.from_args(args)
    try:
        if args.action == "create":
            return client.call("POST", "/webhooks", create_body(args))
        if args.action == "list":
            return client.call("GET", "/webhooks")
        if args.action == "get":
            return client.call("GET", f"/webhooks/{args.id}")
        if args.action == "rotate":
            body = {k: v for k, v in (("secret", args.secret),
                                      ("grace_seconds", args.grace)) if v is not None}
            return client.call("POST", f"/webhooks/{args.id}/secret", body)
        return client.call("DELETE", f"/webhooks/{args.id}")
    finally:
        client.close()


def main(args: argparse.Namespace) -> None:
    try:
        out = run(args)
    except RestError as exc:
        raise SystemExit(f"orchestrator webhooks: {exc}") from None
    if out is not None:
        json.dump(out, sys.stdout, indent=2)
        print()
    if isinstance(out, dict) and out.get("warning"):
        print(f"! {out['warning']}", file=sys.stderr)
