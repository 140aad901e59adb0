"""Apps: registering one (introspect it, check what it declares, save it unless its URL
or its functions belong to another app), and listing apps and functions."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import httpx

from orchestrator.engine import answers as a
from orchestrator.engine import cron, views
from orchestrator.engine.invoker import Invoker
from orchestrator.engine.registration import check_app_url, validate_functions
from orchestrator.engine.registry import Registry
from orchestrator.errors import Conflict, Invalid
from orchestrator.store import CronInsert, Store, Tx
from sdk import protocol as p
from sdk.function import NAME_RE

log = logging.getLogger("orchestrator")


async def save_app(tx: Tx, app_id: str, url: str, sdk: str, configs: list[dict[str, Any]],
                   crons: list[CronInsert], now: float) -> None:
    """Save an app, its functions and its code crons (replacing those of its previous
    registration). Refused (409) if another app is registered at ``url`` or serves one of
    its functions."""
    await tx.apps.lock()
    other = await tx.apps.url_owner(url)
    if other is not None and other != app_id:
        raise Conflict(f"{url} is registered as app {other!r}, but the app there now "
                       f"reports the id {app_id!r}", "url")
    names = [c["name"] for c in configs]
    owners = await tx.apps.owners(names)
    taken = sorted(n for n, a in owners.items() if a != app_id)
    if taken:
        raise Conflict(f"functions already registered by another app: {taken}", "functions")
    previous = [f.name for f in await tx.apps.list_functions() if f.app_id == app_id]
    await tx.apps.save(app_id, url, sdk, configs, now)
    await tx.crons.replace_code_crons(sorted({*names, *previous}), crons)


class Apps:
    def __init__(self, store: Store, registry: Registry, invoker: Invoker, *,
                 allow_insecure: bool, crons_changed: Callable[[], None]) -> None:
        self.store = store
        self.registry = registry
        self.invoker = invoker
        self.allow_insecure = allow_insecure
        self.crons_changed = crons_changed
        """Told when a registration may have changed the crons (the scheduler)."""

    async def introspect(self, url: str) -> dict[str, Any]:
        """The app's signed introspection answer; refused (422 on ``url``) if the app
        cannot be reached, does not sign with our key or answers something invalid."""
        await check_app_url(url, allow_insecure=self.allow_insecure)
        try:
            info = await self.invoker.exchange(url, p.introspect_request())
        except httpx.HTTPError as exc:
            raise Invalid(f"could not reach the app at {url}: {exc!r}", "url") from None
        except p.SignatureError as exc:
            raise Invalid(f"the app's answer is not signed with our key: {exc}", "url") from None
        except (ValueError, p.ProtocolError) as exc:
            raise Invalid(f"the app's introspection answer is invalid: {exc}", "url") from None
        app_id = info.get("app_id")
        if not isinstance(app_id, str) or not NAME_RE.match(app_id):
            raise Invalid(f"the app reports an invalid app_id {app_id!r}", "url")
        return dict(info)

    async def register(self, url: str) -> a.RegisteredApp:
        info = await self.introspect(url)
        app_id = str(info["app_id"])
        configs, crons = validate_functions(info.get("functions"))
        now = time.time()
        for c in crons:
            c["next_fire_at"] = cron.next_fire(cron.parse(c["expression"], c["timezone"]), now)
            c["created_at"] = now
        async with self.store.write() as tx:
            await save_app(tx, app_id, url, str(info.get("sdk", "")), configs, crons, now)
        await self.registry.reload()
        self.crons_changed()
        log.info("registered app %s at %s with %d functions", app_id, url, len(configs))
        return {"id": app_id, "url": url, "sdk": info.get("sdk"), "synced_at": views.stamp(now),
                "functions": cast(list[a.FunctionConfig], configs)}

    async def list_apps(self) -> list[a.App]:
        async with self.store.read() as tx:
            apps = await tx.apps.list_apps()
            fns = await tx.apps.list_functions()
        by_app: dict[str, list[str]] = {}
        for f in fns:
            by_app.setdefault(f.app_id, []).append(f.name)
        return [{"id": r.id, "url": r.url, "sdk": r.sdk, "synced_at": views.stamp(r.synced_at),
                 "functions": by_app.get(r.id, []), "status": cast(a.AppStatus, r.status),
                 "error": r.error}
                for r in apps]

    async def list_functions(self) -> list[a.Function]:
        async with self.store.read() as tx:
            fns = await tx.apps.list_functions()
        return [cast(a.Function, {**json.loads(f.config_json), "app_id": f.app_id, "url": f.url})
                for f in fns]
