"""Webhook sources: creating, listing, rotating and deleting them, and taking their
deliveries. A delivery that verifies becomes one event through ``ingest`` in the
transaction that answers it (a 2xx is an event); the runs it triggers start after the
commit, claimed by the dispatcher, so the answer does not wait for them."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from orchestrator.engine import answers as a
from orchestrator.engine import views
from orchestrator.engine.hub import Hub
from orchestrator.engine.ingest import ingest_events
from orchestrator.engine.lifecycle import Effects
from orchestrator.engine.webhooks import (
    DEFAULT_TOLERANCE,
    DEFAULTS,
    Algorithm,
    Encoding,
    Kind,
    Malformed,
    Rule,
    Signature,
    event_of,
    parse_body,
    verify,
)
from orchestrator.errors import ApiError, Invalid, NotFound
from orchestrator.ids import new_id
from orchestrator.store import Store, Tx, WebhookSourceInsert, WebhookSourceRow

log = logging.getLogger("orchestrator.webhooks")

#: How long the previous secret is still accepted after a rotation, by default (seconds).
DEFAULT_GRACE = 24 * 3600.0
UNAUTHENTICATED = ("source {id} is unauthenticated (kind none): anyone who knows its URL "
                   "can send it events")


@dataclass(frozen=True)
class SourceSpec:
    """A source to create; rules left None take the kind's defaults (``DEFAULTS``)."""

    kind: Kind
    secret: str | None = None
    event: Rule | None = None
    delivery_id: Rule | None = None
    signature: Signature = field(default_factory=Signature)
    tolerance: float = DEFAULT_TOLERANCE


def _view(r: WebhookSourceRow | WebhookSourceInsert) -> a.WebhookSource:
    row: Mapping[str, Any] = r if isinstance(r, dict) else r._asdict()
    signature = {"header": row["sig_header"], "algorithm": row["sig_algorithm"],
                 "encoding": row["sig_encoding"], "prefix": row["sig_prefix"]}
    return cast(a.WebhookSource, {
        "id": row["id"], "kind": row["kind"], "path": f"/hooks/{row['id']}",
        "event": {"source": row["event_from"], "key": row["event_key"],
                  "prefix": row["event_prefix"]},
        "delivery_id": {"source": row["id_from"], "key": row["id_key"], "prefix": ""},
        "signature": signature if row["kind"] == "generic" else None,
        "tolerance": float(row["tolerance"]),
        "previous_secret_until": views.iso(row["previous_until"])
        if row["previous_secret"] else None,
        "created_at": views.stamp(row["created_at"]),
    })


def _with_secret(view: a.WebhookSource, secret: str | None) -> a.WebhookSourceWithSecret:
    """A source as its create and rotate answers show it: with its secret, once."""
    out = cast(a.WebhookSourceWithSecret, dict(view))
    out["secret"] = secret
    return out


def _secrets(row: WebhookSourceRow, now: float) -> list[str]:
    """The secrets a delivery may be signed with: the current one, and the previous one
    until its grace ends."""
    out = [row.secret] if row.secret else []
    if row.previous_secret and (row.previous_until is None or now <= row.previous_until):
        out.append(row.previous_secret)
    return out


class WebhookSources:
    def __init__(self, store: Store, hub: Hub) -> None:
        self.store = store
        self.hub = hub

    # -- management --------------------------------------------------------------------

    async def create(self, spec: SourceSpec) -> a.WebhookSourceWithSecret:
        defaults = DEFAULTS.get(spec.kind)
        event = spec.event or (defaults.event if defaults else None)
        if event is None:
            raise Invalid(f"a {spec.kind} source needs an 'event' rule (a header, a body "
                          "field or a constant)", "event")
        id_rule = spec.delivery_id or (defaults.id if defaults else Rule("none"))
        secret = None if spec.kind == "none" else spec.secret or secrets.token_urlsafe(32)
        sig = spec.signature
        row: WebhookSourceInsert = {
            "id": new_id(), "kind": spec.kind, "secret": secret, "event_from": event.source,
            "event_key": event.key, "event_prefix": event.prefix, "id_from": id_rule.source,
            "id_key": id_rule.key, "created_at": time.time(), "sig_header": sig.header,
            "sig_algorithm": sig.algorithm, "sig_encoding": sig.encoding,
            "sig_prefix": sig.prefix, "tolerance": spec.tolerance,
            "previous_secret": None, "previous_until": None,
        }
        async with self.store.write() as tx:
            await tx.webhooks.add(row)
        out = _with_secret(_view(row), secret)
        if spec.kind == "none":
            out["warning"] = UNAUTHENTICATED.format(id=row["id"])
            log.warning(out["warning"])
        return out

    async def list_sources(self) -> list[a.WebhookSource]:
        async with self.store.read() as tx:
            return [_view(r) for r in await tx.webhooks.list_all()]

    async def _get(self, tx: Tx, source_id: str) -> WebhookSourceRow:
        row = await tx.webhooks.get(source_id)
        if row is None:
            raise NotFound(f"no webhook source {source_id!r}", "id")
        return row

    async def get(self, source_id: str) -> a.WebhookSource:
        async with self.store.read() as tx:
            return _view(await self._get(tx, source_id))

    async def rotate(self, source_id: str, secret: str | None,
                     grace: float = DEFAULT_GRACE) -> a.WebhookSourceWithSecret:
        """A new secret; the current one stays accepted for ``grace`` seconds (0: not at
        all), replacing any previous one."""
        now = time.time()
        async with self.store.write() as tx:
            row = await self._get(tx, source_id)
            if row.kind == "none":
                raise Invalid("an unauthenticated source (kind none) has no secret", "id")
            new = secret or secrets.token_urlsafe(32)
            keep = row.secret if grace > 0 else None
            await tx.webhooks.rotate(source_id, new, keep, now + grace if keep else None)
            row = await self._get(tx, source_id)
        return _with_secret(_view(row), new)

    async def delete(self, source_id: str) -> None:
        async with self.store.write() as tx:
            if not await tx.webhooks.remove(source_id):
                raise NotFound(f"no webhook source {source_id!r}", "id")

    # -- deliveries --------------------------------------------------------------------

    async def deliver(self, source_id: str, headers: Mapping[str, str], content_type: str,
                      body: bytes) -> a.WebhookDelivered:
        """Verify a delivery and store it as an event (``headers`` with lower-case names).
        What is refused is logged with the source's id and stores nothing."""
        now = time.time()
        try:
            async with self.store.read() as tx:
                row = await self._get(tx, source_id)
            kind = cast(Kind, row.kind)
            sig = Signature(row.sig_header, cast(Algorithm, row.sig_algorithm),
                            cast(Encoding, row.sig_encoding), row.sig_prefix)
            verify(kind, _secrets(row, now), headers, body, now, sig, row.tolerance)
            if kind == "none":
                log.warning(UNAUTHENTICATED.format(id=source_id) + ": delivery not verified")
            event = event_of(source_id, Rule(row.event_from, row.event_key, row.event_prefix),
                             Rule(row.id_from, row.id_key), headers,
                             parse_body(content_type, body))
        except ApiError as exc:
            log.warning("webhook source %s: refused a delivery (%d): %s", source_id,
                        exc.status, exc.message)
            raise

        async def work(tx: Tx, fx: Effects) -> a.WebhookDelivered:
            res = await ingest_events(tx, [event], now, fx)
            return {"id": res.event_ids[0], "duplicate": res.duplicate[0]}

        return await self.hub.transact(work)


__all__ = ["DEFAULT_GRACE", "Malformed", "SourceSpec", "WebhookSources"]
