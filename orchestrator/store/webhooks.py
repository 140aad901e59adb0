"""Webhook sources: the secrets and rules of the deliveries ``/hooks/{id}`` takes."""

from __future__ import annotations

from typing import cast

from sqlalchemy import delete, select, update

from orchestrator.store.base import Repo
from orchestrator.store.models import webhook_sources
from orchestrator.store.rows import WebhookSourceInsert, WebhookSourceRow


class WebhooksRepo(Repo):
    async def add(self, row: WebhookSourceInsert) -> None:
        await self.conn.execute(webhook_sources.insert(), [row])

    async def get(self, source_id: str) -> WebhookSourceRow | None:
        return cast("WebhookSourceRow | None", (await self.conn.execute(
            select(webhook_sources).where(webhook_sources.c.id == source_id))).first())

    async def list_all(self) -> list[WebhookSourceRow]:
        return cast("list[WebhookSourceRow]", list(await self.conn.execute(
            select(webhook_sources).order_by(webhook_sources.c.id))))

    async def rotate(self, source_id: str, secret: str, previous: str | None,
                     previous_until: float | None) -> int:
        res = await self.conn.execute(
            update(webhook_sources).where(webhook_sources.c.id == source_id)
            .values(secret=secret, previous_secret=previous, previous_until=previous_until))
        return int(res.rowcount)

    async def remove(self, source_id: str) -> int:
        res = await self.conn.execute(
            delete(webhook_sources).where(webhook_sources.c.id == source_id))
        return int(res.rowcount)
