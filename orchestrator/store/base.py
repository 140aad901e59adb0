"""What every repository holds: the transaction's connection and the backend hooks."""

from __future__ import annotations

from orchestrator.store.db import Backend, Conn


class Repo:
    def __init__(self, conn: Conn, backend: Backend) -> None:
        self.conn = conn
        self.backend = backend
