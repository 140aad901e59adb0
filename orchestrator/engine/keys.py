"""REST API keys: made, listed and revoked through the API (kept as their SHA-256 only),
and what a key presented with a request grants. The keys from the settings
(``DURABLE_API_KEYS``, the dev launcher's key) are ``admin`` keys and never touch the
database. See docs/security.md."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, get_args

from orchestrator.engine import answers as a
from orchestrator.engine import views
from orchestrator.errors import NotFound
from orchestrator.ids import new_id
from orchestrator.store import ApiKeyInsert, Store

log = logging.getLogger("orchestrator.keys")

KEY_START: Final = "dk_"
#: How much of a key a listing shows: ``dk_`` and 8 random characters (48 bits).
PREFIX_CHARS: Final = len(KEY_START) + 8
#: 32 random bytes (256 bits), URL-safe base64: 43 characters after ``dk_``.
KEY_BYTES: Final = 32
#: How long a replica trusts what it read about a key (a revocation made on another
#: replica takes effect within this many seconds; on this one, at once).
CACHE_SECONDS: Final = 2.0
#: Keys remembered at most (cleared when full): unknown keys are remembered too, so a
#: flood of bad keys cannot make every request a database read.
MAX_CACHED: Final = 10_000
#: A key's ``last_used_at`` is written at most this often (seconds), outside the request.
USED_EVERY: Final = 60.0
SCOPES: Final[tuple[a.Scope, ...]] = get_args(a.Scope)


def key_hash(key: str) -> str:
    """The hex SHA-256 of ``key``: the keys are 256 random bits, so no guess or table can
    find a key from its hash, and a slow KDF would only slow every request down."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid key may do."""

    key_id: str | None  # None: a key from the settings
    scopes: frozenset[str]

    def allows(self, scope: a.Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes


SETTINGS_GRANT: Final = Grant(None, frozenset({"admin"}))


def key_view(r: Mapping[str, Any]) -> a.ApiKey:
    """A key as listed: never the key, nor its hash."""
    return {"id": r["id"], "prefix": r["prefix"], "name": r["name"],
            "scopes": [s for s in SCOPES if s in r["scopes"].split()],
            "created_at": views.stamp(r["created_at"]),
            "last_used_at": views.iso(r.get("last_used_at")),
            "revoked_at": views.iso(r.get("revoked_at"))}


class Keys:
    def __init__(self, store: Store, settings_keys: Sequence[str], *,
                 cache_seconds: float = CACHE_SECONDS, used_every: float = USED_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.fixed = {key_hash(k): SETTINGS_GRANT for k in settings_keys}
        self.cache_seconds = cache_seconds
        self.used_every = used_every
        self.clock = clock
        self._cache: dict[str, tuple[float, Grant | None]] = {}
        self._recorded: dict[str, float] = {}  # key id -> when its use was last written
        self._writes: set[asyncio.Task[None]] = set()

    async def grant(self, key: str) -> Grant | None:
        """What ``key`` may do; None for a key that is unknown or revoked."""
        h = key_hash(key)
        fixed = self.fixed.get(h)
        if fixed is not None:
            return fixed
        now = self.clock()
        hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            grant = hit[1]
        else:
            async with self.store.read() as tx:
                row = await tx.keys.grant(h)
            grant = None if row is None else Grant(row.id, frozenset(row.scopes.split()))
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[h] = (now + self.cache_seconds, grant)
        if grant is not None and grant.key_id is not None:
            self._used(grant.key_id, now)
        return grant

    def _used(self, key_id: str, now: float) -> None:
        """Record the use in its own small transaction, at most once per ``used_every``."""
        if now - self._recorded.get(key_id, -self.used_every) < self.used_every:
            return
        self._recorded[key_id] = now
        task = asyncio.create_task(self._write_used(key_id, time.time()))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_used(self, key_id: str, at: float) -> None:
        try:
            async with self.store.write() as tx:
                await tx.keys.used([key_id], at)
        except Exception as exc:  # only a statistic: never fail (or log loudly) for it
            log.info("could not record the use of API key %s: %r", key_id, exc)

    async def settle(self) -> None:
        """Wait for the uses being recorded (on shutdown, and in tests)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def create(self, name: str, scopes: Sequence[a.Scope]) -> a.CreatedApiKey:
        key = KEY_START + secrets.token_urlsafe(KEY_BYTES)
        row: ApiKeyInsert = {"id": new_id(), "prefix": key[:PREFIX_CHARS],
                             "hash": key_hash(key),
                             "scopes": " ".join(s for s in SCOPES if s in scopes),
                             "name": name, "created_at": time.time()}
        async with self.store.write() as tx:
            await tx.keys.add(row)
        return {**key_view(row), "key": key}

    async def list(self) -> list[a.ApiKey]:
        async with self.store.read() as tx:
            rows = await tx.keys.listed()
        return [key_view(r._asdict()) for r in rows]

    async def revoke(self, key_id: str) -> None:
        """Revoke a key (again: nothing changes); 404 for an id no key has."""
        async with self.store.write() as tx:
            if not await tx.keys.revoke(key_id, time.time()) and \
                    not await tx.keys.exists(key_id):
                raise NotFound(f"no API key {key_id!r}", "id")
        self._cache = {h: v for h, v in self._cache.items()
                       if v[1] is None or v[1].key_id != key_id}
