"""REST API keys made through the API, kept as their SHA-256 (never the key)."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

from sqlalchemy import select, update

from orchestrator.store.base import Repo
from orchestrator.store.models import api_keys
from orchestrator.store.rows import ApiKeyGrant, ApiKeyInsert, ApiKeyRow

#: Every column but the hash: what a listing shows.
LISTED = [c for c in api_keys.c if c.name != "hash"]


class KeysRepo(Repo):
    async def add(self, row: ApiKeyInsert) -> None:
        await self.conn.execute(api_keys.insert(), [row])

    async def listed(self) -> list[ApiKeyRow]:
        return cast("list[ApiKeyRow]", list(await self.conn.execute(
            select(*LISTED).order_by(api_keys.c.created_at, api_keys.c.id))))

    async def grant(self, key_hash: str) -> ApiKeyGrant | None:
        """The unrevoked key whose hash is ``key_hash``, if any."""
        return cast("ApiKeyGrant | None", (await self.conn.execute(
            select(api_keys.c.id, api_keys.c.scopes)
            .where(api_keys.c.hash == key_hash, api_keys.c.revoked_at.is_(None)))).first())

    async def exists(self, key_id: str) -> bool:
        return (await self.conn.execute(
            select(api_keys.c.id).where(api_keys.c.id == key_id))).first() is not None

    async def revoke(self, key_id: str, now: float) -> int:
        """Revoke the key ``key_id`` (unless it already is): how many rows changed."""
        res = await self.conn.execute(
            update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now))
        return int(res.rowcount)

    async def used(self, key_ids: Collection[str], now: float) -> None:
        """Record that the keys ``key_ids`` were used (about) at ``now``."""
        if key_ids:
            await self.conn.execute(update(api_keys).where(api_keys.c.id.in_(key_ids))
                                    .values(last_used_at=now))
