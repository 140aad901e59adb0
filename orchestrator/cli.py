"""``orchestrator dev`` (embedded SQLite, zero config) and ``orchestrator serve``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import secrets
import sys
from pathlib import Path

import httpx
import uvicorn

from orchestrator.app import create_app
from orchestrator.config import Settings


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="orchestrator")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("dev", "run locally on an embedded SQLite file, zero config"),
                        ("serve", "run in production against --database-url")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--host", default=os.environ.get("DURABLE_HOST", "127.0.0.1"))
        sp.add_argument("--port", type=int, default=int(os.environ.get("DURABLE_PORT", "8288")))
        sp.add_argument("--database-url", default=None,
                        help="sqlite:///path.db or postgresql://user:pw@host/db")
        sp.add_argument("--app", action="append", default=[], metavar="URL",
                        help="register (sync) the app served at URL on start; repeatable")
        sp.add_argument("--lease-ttl", type=float, default=None)
        sp.add_argument("--call-timeout", type=float, default=None)
        sp.add_argument("--allow-insecure-apps", action="store_true", default=None,
                        help="accept plain-http app URLs on public addresses")
        sp.add_argument("--log-level", default=os.environ.get("DURABLE_LOG_LEVEL", "info"))
    return ap


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env(host=args.host, port=args.port, lease_ttl=args.lease_ttl,
                          call_timeout=args.call_timeout,
                          allow_insecure_app_urls=args.allow_insecure_apps)
    if args.database_url:
        s.database_url = args.database_url
    if args.command == "dev":
        if s.database_url.startswith("sqlite:///") and not os.path.isabs(
            s.database_url[len("sqlite:///"):]
        ):
            Path(s.database_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        if not s.api_keys:
            s.api_keys = ["dev-" + secrets.token_urlsafe(18)]
        if not s.signing_key:
            s.signing_key = "dev-signing-" + secrets.token_urlsafe(24)
            print("! no DURABLE_SIGNING_KEY set: generated one for this session; give your "
                  "app the same key", file=sys.stderr)
    else:
        missing = [n for n, v in (("DURABLE_API_KEY(S)", s.api_keys),
                                  ("DURABLE_SIGNING_KEY", s.signing_key)) if not v]
        if args.database_url is None and "DURABLE_DATABASE_URL" not in os.environ:
            missing.append("--database-url / DURABLE_DATABASE_URL")
        if missing:
            raise SystemExit(f"orchestrator serve: set {', '.join(missing)}")
    return s


def _banner(s: Settings, dev: bool) -> None:
    base = f"http://{s.host}:{s.port}"
    lines = [
        "",
        f"  orchestrator {'dev ' if dev else ''}listening on {base}",
        f"  database        {s.database_url}",
        f"  REST API        {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json)",
    ]
    if dev:
        lines += [
            f"  API key         {s.api_keys[0]}",
            f"  signing key     {s.signing_key}",
            "",
            f"  send an event:  curl -X POST {base}/api/v1/events \\",
            f"                    -H 'Authorization: Bearer {s.api_keys[0]}' \\",
            "                    -d '{\"name\": \"order.created\", \"data\": {}}'",
            f"  see runs:       curl -H 'Authorization: Bearer {s.api_keys[0]}' "
            f"{base}/api/v1/runs",
        ]
    print("\n".join(lines) + "\n", flush=True)


async def _register_apps(s: Settings, urls: list[str]) -> None:
    base = f"http://{s.host}:{s.port}/api/v1"
    headers = {"authorization": f"Bearer {s.api_keys[0]}"}
    async with httpx.AsyncClient(timeout=10) as c:
        for url in urls:
            for attempt in range(40):
                try:
                    r = await c.post(f"{base}/apps", json={"url": url}, headers=headers)
                    if r.status_code == 200:
                        fns = [f["name"] for f in r.json()["functions"]]
                        print(f"  registered app {url}: {', '.join(fns)}", flush=True)
                        break
                    err = r.text
                except httpx.HTTPError as exc:
                    err = repr(exc)
                await asyncio.sleep(min(0.25 * (attempt + 1), 2.0))
            else:
                print(f"  ! could not register {url}: {err}", file=sys.stderr, flush=True)


async def _serve(s: Settings, dev: bool, apps: list[str], log_level: str) -> None:
    app = create_app(s)
    config = uvicorn.Config(app, host=s.host, port=s.port, log_level=log_level,
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    # What start-up allocated (modules, tables, compiled statements) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise walk all of it
    # and show as latency spikes (p99).
    gc.collect()
    gc.freeze()
    if server.started:
        _banner(s, dev)
        if apps:
            await _register_apps(s, apps)
    await task


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    s = _settings(args)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server dependency off Windows
        asyncio.run(_serve(s, args.command == "dev", args.app, args.log_level))
    else:
        uvloop.run(_serve(s, args.command == "dev", args.app, args.log_level))


if __name__ == "__main__":
    main()
