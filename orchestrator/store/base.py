"""What every repository holds: the transaction's connection and the backend hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import BindParameter, bindparam

from orchestrator.store.db import Backend, Conn


class Repo:
    def __init__(self, conn: Conn, backend: Backend) -> None:
        self.conn = conn
        self.backend = backend


def prepared(build: Callable[[Backend], Any]) -> Callable[[Backend], Any]:
    """A statement built once per backend (with bind parameters) and reused: building a
    SQLAlchemy statement costs more than running it on the hot path. The backend may keep
    a faster form of it (on SQLite, a ``fastpath.Plan``)."""
    cache: dict[str, Any] = {}

    def get(backend: Backend) -> Any:
        stmt = cache.get(backend.name)
        if stmt is None:
            stmt = cache[backend.name] = backend.prepare(build(backend))
        return stmt

    return get


def ids_param(name: str = "ids") -> BindParameter[Any]:
    return bindparam(name, expanding=True)
