"""Probes apps marked misconfigured (their answers failed verification).

While an app is misconfigured no invoke is sent to it (``Invoker.misconfigured``): each
would run its steps' side effects again, only for the answer to be discarded. This loop
keeps that set in step with the store (so every replica knows), and sends each such app
a signed introspection call, which runs no user code, with capped exponential backoff,
until one verifies: then the app is ``ok`` again and its runs' next delivery goes out.

The same loop writes the apps' last contact times (``Invoker.contacts``) to the store, at
most every ``CONTACT_FLUSH_S`` seconds and only for the apps whose time moved.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from orchestrator.config import Settings
from orchestrator.engine.invoker import Invoker
from orchestrator.loops import supervise
from orchestrator.store import MisconfiguredApp, Store
from sdk import protocol as p

log = logging.getLogger("orchestrator.probe")

RECENT_S = 3.0
"""An app marked in memory this recently is kept marked though the store does not say so
yet (the reducer records it a moment later)."""


CONTACT_FLUSH_S = 30.0
"""How often (seconds, at most) the apps' last contact times are written to the store."""


class Prober:
    def __init__(self, store: Store, invoker: Invoker, settings: Settings,
                 interval: float = 0.5) -> None:
        self.store = store
        self.invoker = invoker
        self.settings = settings
        self.interval = interval
        self.contact_flush = CONTACT_FLUSH_S
        self.idle_interval = interval
        """How often the store is read while no app is marked (the engine lengthens it
        while replicas tell each other what changed)."""
        self._looked_at = 0.0
        self._flushed: dict[str, float] = {}
        self._flushed_at = 0.0

    @property
    def max_backoff(self) -> float:
        return max(1.0, min(60.0, self.settings.delivery_backoff_max))

    async def run(self) -> None:
        await supervise("prober", self.run_once, self.store.health)

    async def run_once(self) -> None:
        """One pass of the supervised loop: probe what is due, then pause. While no app
        is marked here, the store is read every ``idle_interval`` only (a mark made on
        another replica reaches this one then, or at this one's own first failed call)."""
        await self.flush_due()
        if self.invoker.misconfigured or time.time() - self._looked_at >= self.idle_interval:
            self._looked_at = time.time()
            await self.tick()
        await asyncio.sleep(self.interval)

    async def flush_due(self) -> None:
        """Write the contact times that moved, if the flush interval has passed (every
        pass, whatever the idle read's cadence: nothing is read for it)."""
        if time.time() - self._flushed_at >= self.contact_flush:
            await self.flush_contacts()

    async def tick(self) -> None:
        now = time.time()
        async with self.store.read() as tx:
            rows = await tx.apps.misconfigured()
        marked = {r.url: (r.error or "misconfigured", now) for r in rows}
        for url, (err, at) in list(self.invoker.misconfigured.items()):
            if url not in marked and now - at < RECENT_S:
                marked[url] = (err, at)
        self.invoker.misconfigured = marked
        due = [r for r in rows if r.probe_at is None or r.probe_at <= now]
        await asyncio.gather(*(self.probe(r) for r in due))

    async def flush_contacts(self) -> None:
        """Write the last contact time of each app whose time moved since the last flush
        (the invoker keeps them in memory: no write per call). The first contact after a
        quiet spell is written at the next pass, later ones wait for the interval."""
        moved = {u: t for u, t in list(self.invoker.contacts.items())
                 if self._flushed.get(u) != t}
        if not moved:
            return
        self._flushed_at = time.time()
        async with self.store.write() as tx:
            await tx.apps.set_last_contact(moved)
        self._flushed.update(moved)

    async def probe(self, row: MisconfiguredApp) -> None:
        try:
            signer = self.invoker.signer_for(row.signing_key, row.signing_key_fallback)
            info = await self.invoker.exchange(row.url, p.introspect_request(), signer)
            error = None if isinstance(info, dict) else "introspection is not an object"
        except (httpx.HTTPError, p.SignatureError, p.ProtocolError, ValueError) as exc:
            error = f"probe: {type(exc).__name__}: {exc}"
        failures = row.probe_failures + 1
        at = time.time() + min(2.0 ** min(failures, 16), self.max_backoff)
        async with self.store.write() as tx:
            await tx.apps.probed(row.id, error, failures, at)
        if error is None:
            self.invoker.misconfigured.pop(row.url, None)
            log.info("app %s at %s verifies again: its runs continue", row.id, row.url,
                     extra={"app": row.id})
