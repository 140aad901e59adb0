"""Apps, their functions, and the event triggers of those functions."""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import bindparam, delete, or_, select, update

from orchestrator.store.base import Repo
from orchestrator.store.models import apps, functions, triggers
from orchestrator.store.rows import AppRow, MisconfiguredApp, RegisteredFunction


class AppsRepo(Repo):
    async def lock(self) -> None:
        """Serialize registrations (two replicas syncing one app at once)."""
        stmt = self.backend.lock("durable.apps")
        if stmt is not None:
            await self.conn.execute(stmt)

    async def url_owner(self, url: str) -> str | None:
        """The id of the app registered at ``url``, if any."""
        row = (await self.conn.execute(select(apps.c.id).where(apps.c.url == url))).first()
        return None if row is None else str(row.id)

    async def get(self, app_id: str) -> AppRow | None:
        row = (await self.conn.execute(select(apps).where(apps.c.id == app_id))).first()
        return cast("AppRow | None", row)

    async def at_url(self, url: str) -> AppRow | None:
        """The app registered at ``url``, if any."""
        row = (await self.conn.execute(select(apps).where(apps.c.url == url))).first()
        return cast("AppRow | None", row)

    async def set_keys(self, app_id: str, primary: str | None, fallback: str | None) -> bool:
        """Replace an app's key set; False if there is no such app."""
        res = await self.conn.execute(update(apps).where(apps.c.id == app_id).values(
            signing_key=primary, signing_key_fallback=fallback))
        return bool(res.rowcount)

    async def set_budget(self, app_id: str, budget_ms: int | None) -> bool:
        """Set an app's time budget (None: the default); False if there is no such app."""
        res = await self.conn.execute(
            update(apps).where(apps.c.id == app_id).values(budget_ms=budget_ms))
        return bool(res.rowcount)

    async def owners(self, names: list[str]) -> dict[str, str]:
        """Which app owns each of ``names`` (only names that exist)."""
        if not names:
            return {}
        rows = await self.conn.execute(
            select(functions.c.name, functions.c.app_id).where(functions.c.name.in_(names))
        )
        return {r.name: r.app_id for r in rows}

    async def save(
        self, app_id: str, url: str, sdk: str, configs: list[dict[str, Any]], now: float,
        signing_key: str | None = None,
    ) -> None:
        """Create or replace an app and its functions (and their triggers). A new app gets
        ``signing_key`` as its primary key; an existing one keeps its key set."""
        # registering verified its signed introspection: it is configured right
        values = {"url": url, "sdk": sdk, "synced_at": now, "status": "ok", "error": None,
                  "probe_at": None, "probe_failures": 0}
        ins = self.backend.insert(apps).values(id=app_id, signing_key=signing_key, **values)
        await self.conn.execute(ins.on_conflict_do_update(index_elements=["id"], set_=values))
        old = select(functions.c.name).where(functions.c.app_id == app_id)
        await self.conn.execute(delete(triggers).where(triggers.c.function.in_(old)))
        await self.conn.execute(delete(functions).where(functions.c.app_id == app_id))
        if configs:
            await self.conn.execute(
                functions.insert(),
                [
                    {"name": c["name"], "app_id": app_id, "kind": c.get("kind", "task"),
                     "config_json": json.dumps(c), "updated_at": now}
                    for c in configs
                ],
            )
        trig = [
            {"event": t["event"], "function": c["name"]}
            for c in configs
            for t in c.get("triggers", [])
            if t.get("event")
        ]
        if trig:
            await self.conn.execute(triggers.insert(), trig)

    async def mark_misconfigured(self, url: str, error: str, probe_at: float) -> None:
        """The app at ``url`` answered with a signature that does not verify."""
        await self.conn.execute(
            update(apps).where(apps.c.url == url, apps.c.status != "misconfigured")
            .values(status="misconfigured", error=error, probe_at=probe_at, probe_failures=0))

    async def misconfigured(self) -> list[MisconfiguredApp]:
        return cast("list[MisconfiguredApp]", list(await self.conn.execute(
            select(apps.c.id, apps.c.url, apps.c.error, apps.c.probe_at,
                   apps.c.probe_failures, apps.c.signing_key, apps.c.signing_key_fallback)
            .where(apps.c.status == "misconfigured"))))

    async def probed(self, app_id: str, error: str | None, failures: int,
                     probe_at: float | None) -> None:
        """Record a probe: ``error`` None means it verified (the app is ok again)."""
        values: dict[str, Any] = (
            {"status": "ok", "error": None, "probe_at": None, "probe_failures": 0}
            if error is None else
            {"error": error, "probe_at": probe_at, "probe_failures": failures})
        await self.conn.execute(update(apps).where(apps.c.id == app_id).values(**values))

    async def set_last_contact(self, contacts: dict[str, float]) -> None:
        """Record when each app (by URL) last answered; a time never moves back."""
        if contacts:
            await self.conn.execute(
                update(apps).where(apps.c.url == bindparam("u"), or_(
                    apps.c.last_contact_at.is_(None),
                    apps.c.last_contact_at < bindparam("t")))
                .values(last_contact_at=bindparam("t")),
                [{"u": u, "t": t} for u, t in contacts.items()])

    async def list_apps(self) -> list[AppRow]:
        return cast("list[AppRow]",
                    list(await self.conn.execute(select(apps).order_by(apps.c.id))))

    async def list_functions(self) -> list[RegisteredFunction]:
        q = (
            select(functions, apps.c.url, apps.c.signing_key, apps.c.signing_key_fallback,
                   apps.c.budget_ms)
            .join(apps, apps.c.id == functions.c.app_id)
            .order_by(functions.c.name)
        )
        return cast("list[RegisteredFunction]", list(await self.conn.execute(q)))

    async def triggered_by(self, event_names: list[str]) -> dict[str, list[str]]:
        """Event name -> names of the functions it triggers."""
        if not event_names:
            return {}
        rows = await self.conn.execute(
            select(triggers.c.event, triggers.c.function)
            .where(triggers.c.event.in_(event_names))
            .order_by(triggers.c.id)
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r.event, []).append(r.function)
        return out
