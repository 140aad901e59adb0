"""What every repository holds: the transaction's connection and the backend hooks."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.store.db import Backend


class Repo:
    def __init__(self, conn: AsyncConnection, backend: Backend) -> None:
        self.conn = conn
        self.backend = backend
