"""``orchestrator dev`` (embedded SQLite, zero config) and ``orchestrator serve``;
``orchestrator migrate`` (the schema migrations, ``store/migrate.py``); and the commands
that call a running one's REST API: ``orchestrator apps`` (``apps_cli``), ``keys``
(``keys_cli``) and ``webhooks`` (``webhooks_cli``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import uvicorn

from orchestrator import apps_cli, keys_cli, logs, webhooks_cli
from orchestrator.app import create_app
from orchestrator.config import (
    DEV_KEYS_FILE,
    ENV_FILE,
    ENV_FILE_VAR,
    BadSettings,
    Settings,
    add_flags,
    dev_keys,
    flag_fields,
    private_dir,
    private_files,
)
from orchestrator.errors import DatabaseUnavailable
from orchestrator.store import migrate
from orchestrator.store.db import DatabaseInUse, SchemaError, driver_reason


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="orchestrator")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("dev", "run locally on an embedded SQLite file, zero config"),
                        ("serve", "run in production against --database-url")):
        sp = sub.add_parser(name, help=help_)
        add_flags(sp)
        sp.add_argument("--env-file", default=None, metavar="PATH",
                        help=f"read settings from this file ({ENV_FILE_VAR}; default: "
                             f"{ENV_FILE} in the working directory, if there)")
        sp.add_argument("--app", action="append", default=[], metavar="URL",
                        help="register (sync) the app served at URL on start; repeatable")
        if name == "dev":
            sp.add_argument("--show-keys", action="store_true",
                            help="print the signing key (it is kept in dev-keys.env beside "
                                 "the database, readable by you only)")
    sp = sub.add_parser("migrate", help="migrate the database's schema to this version's "
                                         "(idempotent; `serve` refuses an older schema)")
    sp.add_argument("--database-url", default=None, metavar="URL",
                    help="the database (default: DURABLE_DATABASE_URL, or the .env file's)")
    sp.add_argument("--env-file", default=None, metavar="PATH",
                    help=f"read settings from this file ({ENV_FILE_VAR})")
    keys_cli.add_parser(sub)
    webhooks_cli.add_parser(sub)
    apps_cli.add_parser(sub)
    return ap


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL; None for PostgreSQL or an in-memory one."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _settings(args: argparse.Namespace) -> tuple[Settings, str | None]:
    """The settings (``BadSettings`` if one is refused) and, for ``dev``, the file its
    keys are kept in (None: made for this session)."""
    s = Settings.load({field: getattr(args, field) for field, _, _ in flag_fields()},
                      env_file=args.env_file)
    keys_path: str | None = None
    if args.command == "dev":
        db_file = _sqlite_file(s.database_url)
        if db_file is not None:
            # the dev database and its keys: readable by their owner only, kept together
            # (the same keys on every start, as `make run` has them)
            folder = private_dir(db_file.parent)
            os.umask(0o077)  # the database, its -wal, -shm and .lock files: 0600
            private_files(folder, db_file.name, db_file.name + "-wal",
                          db_file.name + "-shm", db_file.name + ".lock")
            keys = dev_keys(folder)
            s.api_keys = s.api_keys or [keys["DURABLE_API_KEY"]]
            s.signing_key = s.signing_key or keys["DURABLE_SIGNING_KEY"]
            keys_path = str(folder / DEV_KEYS_FILE)
        if not s.api_keys:
            s.api_keys = ["dev-" + secrets.token_urlsafe(18)]
        if not s.signing_key:
            s.signing_key = "dev-signing-" + secrets.token_urlsafe(24)
            note = ("no DURABLE_SIGNING_KEY set: generated one for this session; give your "
                    "app the same key (--show-keys prints it)")
            if s.log_format == "json":  # stderr stays all JSON (main's configure: a no-op)
                logs.configure(s.log_level, s.log_format)
                logging.getLogger("orchestrator").warning(note)
            else:
                print("! " + note, file=sys.stderr)
    else:
        missing = [n for n, v in (("DURABLE_API_KEY(S)", s.api_keys),
                                  ("DURABLE_SIGNING_KEY", s.signing_key)) if not v]
        if "database_url" not in s.model_fields_set:
            missing.append("--database-url / DURABLE_DATABASE_URL")
        if missing:
            raise SystemExit(f"orchestrator serve: set {', '.join(missing)}")
    return s, keys_path


def _banner(s: Settings, dev: bool, show_keys: bool = False,
            keys_path: str | None = None) -> None:
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
            "  signing key     " + (s.signing_key if show_keys else
                                     f"in {keys_path}" if keys_path else
                                     "(not shown: --show-keys prints it)"),
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
                if s.log_format == "json":  # stderr stays all JSON
                    logging.getLogger("orchestrator").warning(
                        "could not register %s: %s", url, err)
                else:
                    print(f"  ! could not register {url}: {err}", file=sys.stderr,
                          flush=True)


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``: hands the heap's free pages back to the system."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


async def _trim_memory(every: float = 5.0) -> None:
    """Large payloads (memos up to 32 MiB) leave freed memory in malloc's heap, kept by
    the process (RSS stayed ~290 MiB after a few 15 MiB-memo runs; bench/memory.py).
    When RSS has grown since the last look, trim it back."""
    trim = _malloc_trim()
    if trim is None:
        return
    last = _rss()
    while True:
        await asyncio.sleep(every)
        rss = _rss()
        if rss > last + 32 * 1024 * 1024:
            trim()
            rss = _rss()
        last = rss


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class _Server(uvicorn.Server):
    """uvicorn's server, but a SIGINT/SIGTERM it handled is not raised again once it
    has stopped: the engine (started around it) still stops cleanly after it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        sigs = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def _serve(s: Settings, dev: bool, apps: list[str], show_keys: bool = False,
                 keys_path: str | None = None) -> None:
    app = create_app(s)
    # dev migrates a database behind the newest revision by itself; serve refuses it
    app.state.engine.store.db.upgrade_on_open = dev
    # The engine starts here rather than in uvicorn's lifespan, so that a reason not to
    # start (the database is in use, of another schema version) is one line, not two
    # tracebacks in uvicorn's log.
    try:
        async with app.router.lifespan_context(app):
            # json: no config of uvicorn's own, its loggers propagate to ours (logs.py)
            log_config = uvicorn.config.LOGGING_CONFIG if s.log_format == "text" else None
            config = uvicorn.Config(app, host=s.host, port=s.port, log_level=s.log_level,
                                    log_config=log_config, access_log=False, lifespan="off",
                                    timeout_keep_alive=int(s.keep_alive))
            server = _Server(config)
            task = asyncio.create_task(server.serve())
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            # What start-up allocated (modules, tables, compiled statements) lives as long
            # as the process: keep it out of the collector's full passes, which otherwise
            # walk all of it and show as latency spikes (p99).
            gc.collect()
            gc.freeze()
            trimmer = asyncio.create_task(_trim_memory())
            if server.started:
                _banner(s, dev, show_keys, keys_path)
                if apps:
                    await _register_apps(s, apps)
            await task
            trimmer.cancel()
            if not server.started:
                raise SystemExit(1)  # uvicorn said why (e.g. the port is in use)
    except (DatabaseInUse, SchemaError, DatabaseUnavailable) as exc:
        raise SystemExit(f"orchestrator: {exc}") from None


def _migrate(args: argparse.Namespace) -> None:
    """``orchestrator migrate``: upgrade to the newest revision; prints from and to."""
    try:
        s = Settings.load({"database_url": args.database_url}, env_file=args.env_file)
        before, now = migrate.upgrade(s.database_url)
    except (BadSettings, SchemaError, DatabaseUnavailable) as exc:
        raise SystemExit(f"orchestrator migrate: {exc}") from None
    except Exception as exc:  # the database could not be reached, or a migration failed
        raise SystemExit(f"orchestrator migrate: {driver_reason(exc)}") from None
    if before.revision == now:
        print(f"the database is at revision {now}: nothing to do")
    elif before.empty:
        print(f"created the schema (empty database) at revision {now}")
    else:
        print(f"migrated the database from {before.describe()} to revision {now}")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        _migrate(args)
        return
    if args.command == "keys":
        keys_cli.main(args)
        return
    if args.command == "webhooks":
        webhooks_cli.main(args)
        return
    if args.command == "apps":
        raise SystemExit(apps_cli.run(args))
    try:
        s, keys_path = _settings(args)
    except BadSettings as exc:
        raise SystemExit(f"orchestrator: {exc}") from None
    logs.configure(s.log_level, s.log_format)
    serve = _serve(s, args.command == "dev", args.app,
                   bool(getattr(args, "show_keys", False)), keys_path)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server dependency off Windows
        asyncio.run(serve)
    else:
        uvloop.run(serve)


if __name__ == "__main__":
    main()
