"""Apps: registering one (introspect it signed with the key the app holds, check what it
declares, save it unless its URL, its id or its functions belong to another app), its key
set (rotate, drop the fallback) and time budget, and listing apps and functions."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

import httpx

from orchestrator.engine import answers as a
from orchestrator.engine import cron, views
from orchestrator.engine.invoker import Invoker
from orchestrator.engine.registration import check_app_url, validate_functions
from orchestrator.engine.registry import Registry
from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.store import AppKeys, AppRow, CronInsert, Store, Tx
from sdk import protocol as p
from sdk.function import NAME_RE

log = logging.getLogger("orchestrator")

KeySet = frozenset[str]
"""The keys a signer accepts (an app's primary and fallback)."""


def generate_key() -> str:
    """A new signing key: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


async def save_app(tx: Tx, app_id: str, url: str, sdk: str, configs: list[dict[str, Any]],
                   crons: list[CronInsert], now: float, *, signing_key: str | None = None,
                   verified_with: KeySet, keys_of: Callable[[AppKeys], KeySet]) -> None:
    """Save an app, its functions and its code crons (replacing those of its previous
    registration); a new app gets ``signing_key`` (None: the orchestrator's). Refused
    (409) if another app is registered at ``url`` or serves one of its functions, or if
    the app exists and its introspection verified with keys it does not hold
    (``verified_with`` is not within ``keys_of(row)``): one app's key cannot register over
    another."""
    await tx.apps.lock()
    other = await tx.apps.url_owner(url)
    if other is not None and other != app_id:
        raise Conflict(f"{url} is registered as app {other!r}, but the app there now "
                       f"reports the id {app_id!r}", "url")
    existing = await tx.apps.get(app_id)
    if existing is not None and not verified_with <= keys_of(existing):
        raise Conflict(f"app {app_id!r} is registered with other signing keys: register "
                       f"with its key, or rotate it (POST /api/v1/apps/{app_id}/keys)",
                       "signing_key")
    names = [c["name"] for c in configs]
    owners = await tx.apps.owners(names)
    taken = sorted(n for n, a in owners.items() if a != app_id)
    if taken:
        raise Conflict(f"functions already registered by another app: {taken}", "functions")
    previous = [f.name for f in await tx.apps.list_functions() if f.app_id == app_id]
    await tx.apps.save(app_id, url, sdk, configs, now, signing_key)
    await tx.crons.replace_code_crons(sorted({*names, *previous}), crons)


class Apps:
    def __init__(self, store: Store, registry: Registry, invoker: Invoker, *,
                 allow_insecure: bool, crons_changed: Callable[[], None],
                 default_keys: tuple[str, str | None], call_timeout: float) -> None:
        self.store = store
        self.registry = registry
        self.invoker = invoker
        self.allow_insecure = allow_insecure
        self.crons_changed = crons_changed
        """Told when a registration may have changed the crons (the scheduler)."""
        self.default_key = default_keys[0]
        self.default_keys: KeySet = frozenset(k for k in default_keys if k)
        """The orchestrator's ``DURABLE_SIGNING_KEY`` (and fallback): the key set of an
        app registered without a key of its own."""
        self.max_budget_ms = int(call_timeout * 1000)

    def keys_of(self, row: AppKeys) -> KeySet:
        if row.signing_key is None:
            return self.default_keys
        return frozenset(k for k in (row.signing_key, row.signing_key_fallback) if k)

    def check_budget(self, budget_ms: int | None) -> None:
        if budget_ms is not None and not 0 < budget_ms < self.max_budget_ms:
            raise Invalid(f"'budget_ms' must be above 0 and below the call timeout "
                          f"({self.max_budget_ms} ms)", "budget_ms")

    async def introspect(self, url: str, signer: p.Signer | None = None) -> dict[str, Any]:
        """The app's signed introspection answer (signed and verified with ``signer``,
        default the orchestrator's); refused (422 on ``url``) if the app cannot be
        reached, does not sign with that key or answers something invalid."""
        await check_app_url(url, allow_insecure=self.allow_insecure)
        try:
            info = await self.invoker.exchange(url, p.introspect_request(), signer)
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

    async def register(self, url: str, signing_key: str | None = None,
                       budget_ms: int | None = None, *,
                       generate_key: bool = False) -> a.RegisteredApp:
        """Register (or re-sync) the app at ``url``, introspected with ``signing_key`` if
        given, else with the key set of the app registered there, else with the
        orchestrator's key.

        ``generate_key``: also give the app a key of its own, generated now and answered
        this once. It starts as the app's fallback, beside the key the app signs with
        today (which becomes the app's primary, if it was the orchestrator's): requests
        stay signed with that key while the app is redeployed with the new one as its
        primary (and the old one as its fallback); answers signed with either verify.
        ``POST /apps/{id}/keys`` with the new key then swaps the two, and dropping the
        fallback ends the rotation; no call is refused at any point."""
        self.check_budget(budget_ms)
        if generate_key and signing_key is not None:
            raise Invalid("give a signing_key or ask for a generated one, not both",
                          "generate_key")
        async with self.store.read() as tx:
            known = await tx.apps.at_url(url)
        if signing_key is not None:
            verified_with: KeySet = frozenset((signing_key,))
            signer = self.invoker.signer_for(signing_key, None)
        elif known is not None:
            verified_with = self.keys_of(known)
            signer = self.invoker.signer_for(known.signing_key, known.signing_key_fallback)
        else:
            verified_with, signer = self.default_keys, self.invoker.signer
        info = await self.introspect(url, signer)
        app_id = str(info["app_id"])
        configs, crons = validate_functions(info.get("functions"))
        now = time.time()
        for c in crons:
            c["next_fire_at"] = cron.next_fire(cron.parse(c["expression"], c["timezone"]), now)
            c["created_at"] = now
        async with self.store.write() as tx:
            await save_app(tx, app_id, url, str(info.get("sdk", "")), configs, crons, now,
                           signing_key=signing_key, verified_with=verified_with,
                           keys_of=self.keys_of)
            if budget_ms is not None:
                await tx.apps.set_budget(app_id, budget_ms)
            new_key = await self._stage_key(tx, app_id) if generate_key else None
        await self.registry.reload()
        self.crons_changed()
        log.info("registered app %s at %s with %d functions", app_id, url, len(configs),
                 extra={"app": app_id})
        out: a.RegisteredApp = {
            "id": app_id, "url": url, "sdk": info.get("sdk"), "synced_at": views.stamp(now),
            "functions": cast(list[a.FunctionConfig], configs)}
        if new_key is not None:
            out["signing_key"] = new_key
            log.info("generated a signing key for app %s (its fallback until rotated in)",
                     app_id, extra={"app": app_id})
        return out

    async def _stage_key(self, tx: Tx, app_id: str) -> str:
        """A generated key, saved as the app's fallback beside the key it signs with now
        (refused while a rotation is under way: its fallback still verifies answers)."""
        row = await self._get(tx, app_id)
        if row.signing_key_fallback is not None:
            raise Conflict(f"app {app_id!r} is mid-rotation (it has a fallback key): finish "
                           f"it (DELETE /api/v1/apps/{app_id}/keys/fallback) before "
                           "generating another key", "generate_key")
        new = generate_key()
        await tx.apps.set_keys(app_id, row.signing_key or self.default_key, new)
        return new

    async def rotate_key(self, app_id: str, key: str | None = None) -> a.AppKey:
        """Make ``key`` (None: a generated one) the app's primary, its primary the
        fallback: requests are signed with the new key from now on, answers signed with
        either verify. Answers with the new key, this once."""
        new = key or generate_key()
        async with self.store.write() as tx:
            row = await self._get(tx, app_id)
            old = row.signing_key or self.default_key
            if new == old:
                raise Conflict("that key is the app's primary key already", "key")
            await tx.apps.set_keys(app_id, new, old)
        await self.registry.reload()
        log.info("rotated the signing key of app %s", app_id, extra={"app": app_id})
        return {"id": app_id, "signing_key": new}

    async def drop_fallback(self, app_id: str) -> None:
        """Stop accepting the app's fallback key (once the app signs with its primary)."""
        async with self.store.write() as tx:
            row = await self._get(tx, app_id)
            await tx.apps.set_keys(app_id, row.signing_key, None)
        await self.registry.reload()

    async def set_budget(self, app_id: str, budget_ms: int | None) -> a.App:
        """Set the app's time budget per call (None: the orchestrator's default)."""
        self.check_budget(budget_ms)
        async with self.store.write() as tx:
            await self._get(tx, app_id)
            await tx.apps.set_budget(app_id, budget_ms)
        await self.registry.reload()
        return next(v for v in await self.list_apps() if v["id"] == app_id)

    @staticmethod
    async def _get(tx: Tx, app_id: str) -> AppRow:
        row = await tx.apps.get(app_id)
        if row is None:
            raise NotFound(f"no app {app_id!r}", "id")
        return row

    async def list_apps(self) -> list[a.App]:
        async with self.store.read() as tx:
            apps = await tx.apps.list_apps()
            fns = await tx.apps.list_functions()
        by_app: dict[str, list[str]] = {}
        for f in fns:
            by_app.setdefault(f.app_id, []).append(f.name)
        return [{"id": r.id, "url": r.url, "sdk": r.sdk, "synced_at": views.stamp(r.synced_at),
                 "functions": by_app.get(r.id, []), "status": cast(a.AppStatus, r.status),
                 "error": r.error, "budget_ms": r.budget_ms,
                 "own_key": r.signing_key is not None,
                 "fallback_key": r.signing_key_fallback is not None,
                 "last_contact_at": r.last_contact_at}
                for r in apps]

    async def list_functions(self) -> list[a.Function]:
        async with self.store.read() as tx:
            fns = await tx.apps.list_functions()
        return [cast(a.Function, {**json.loads(f.config_json), "app_id": f.app_id, "url": f.url})
                for f in fns]

    async def get_function(self, name: str) -> a.FunctionDetail:
        """A function as ``list_functions`` shows it, with its app (as ``list_apps``) and
        its crons as they stand (next fire time, paused)."""
        fn = next((f for f in await self.list_functions() if f["name"] == name), None)
        if fn is None:
            raise NotFound(f"no function {name!r}", "name")
        app = next(x for x in await self.list_apps() if x["id"] == fn["app_id"])
        async with self.store.read() as tx:
            crons = await tx.crons.all(name)
        return {**fn, "kind": fn.get("kind", "task"), "app": app,
                "cron_triggers": [views.cron_view(c._asdict()) for c in crons]}
