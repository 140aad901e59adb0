"""Calls apps over signed HTTP and classifies what came back.

Each app has its own key set (``apps.signing_key`` and its fallback; none: the
orchestrator's own ``DURABLE_SIGNING_KEY``): a request is signed with the app's primary,
and its answer must verify with the app's primary or fallback, so one app's key cannot
sign for another app. ``signer_for`` gives (and caches) the signer of a key set.

Calls go through ``orchestrator.engine.pool.ClientPool``, which bounds the calls in
flight per app origin, over ``sdk.transport.AppTransport`` (a lean keep-alive HTTP/1.1
transport). The invoker sends each call once: the transport alone re-sends a request, on
a kept-alive connection found closed before any answer; every other failure is returned
to the dispatcher, which retries the delivery after a backoff.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.engine.pool import ClientPool
from orchestrator.engine.tracing import CallSpan
from sdk import protocol as p

log = logging.getLogger("orchestrator.invoker")


@dataclass(frozen=True)
class Delivered:
    answer: p.Answer


@dataclass(frozen=True)
class Failed:
    """The call did not produce a valid answer; it is safe to deliver again later."""

    reason: str
    retry_after: float | None = None
    kind: str = "error"
    """What went wrong (also a metrics label): connect, timeout, connection, http_status,
    misconfigured, too_large, malformed, memo_needed (sent the memo's tail to a process
    that does not keep its head); the orchestrator's own: error."""

    @property
    def timed_out(self) -> bool:
        return self.kind == "timeout"

    @property
    def misconfigured(self) -> bool:
        """The app's answer failed verification (or it refused our signature): its keys
        are wrong, and calling it again would run its side effects again for nothing."""
        return self.kind == "misconfigured"


Outcome = Delivered | Failed

MEMO_NEEDED = p.MEMO_NEEDED
"""The kind of a ``Failed`` whose app asked for the whole memo (it ran nothing)."""


def _extra(run_id: str | None, call_id: str, app: str | None,
           function: str | None) -> dict[str, str | None]:
    """The ``extra`` of a log line about one call (``orchestrator.logs.CONTEXT``)."""
    return {"run_id": run_id, "call_id": call_id, "app": app, "function": function}

MAX_SIGNERS = 4096
"""The most apps' signers cached (building one costs a key derivation)."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds >= 1e9:  # NaN, inf, absurd: ignore it
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Invoker:
    def __init__(
        self,
        signer: p.Signer,
        *,
        timeout: float = 60.0,
        pool_size: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.signer = signer
        self.timeout = timeout
        self._signers: dict[tuple[str, str | None], p.Signer] = {}
        self.misconfigured: dict[str, tuple[str, float]] = {}
        """Apps (by URL) marked misconfigured: no invoke is sent to them. The prober keeps
        it in step with the store; values are (error, when marked)."""
        self.contacts: dict[str, float] = {}
        """When each app (by URL) last gave an answer that verified: a dict assignment per
        answer; the prober writes it to ``apps.last_contact_at`` now and then."""
        self.pool = ClientPool(
            pool_size,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            transport=transport,
        )

    async def close(self) -> None:
        await self.pool.aclose()

    def signer_for(self, key: str | None, fallback: str | None) -> p.Signer:
        """The signer of an app's key set (``key`` None: the orchestrator's own signer)."""
        if key is None:
            return self.signer
        signer = self._signers.get((key, fallback))
        if signer is None:
            if len(self._signers) >= MAX_SIGNERS:  # rotations left old key sets behind
                self._signers.clear()
            signer = self._signers[(key, fallback)] = p.Signer(
                key, fallback, max_skew=self.signer.max_skew)
        return signer

    @staticmethod
    def _headers(signer: p.Signer, body: bytes) -> dict[str, str]:
        return {"content-type": "application/json", **signer.sign(body)}

    async def _post(self, url: str, body: bytes, signer: p.Signer,
                    span: CallSpan | None = None) -> httpx.Response:
        # signed once a connection is ours: the wait for one (all of this app's in use)
        # must not eat into the app's short replay window (protocol.md §3)
        def sign() -> dict[str, str]:
            return self._headers(signer, body)

        if span is None:
            return await self.pool.post(url, body, {}, sign)
        with span.current():  # the app's spans join the run's trace
            resp = await self.pool.post(url, body, {"traceparent": span.traceparent}, sign)
        span.status_code = resp.status_code
        return resp

    async def exchange(self, url: str, message: Mapping[str, Any],
                       signer: p.Signer | None = None) -> Any:
        """Send a request signed by ``signer`` (default: the orchestrator's own), verify
        the signed answer with it, return it decoded.

        Raises ``httpx.HTTPError``, ``p.SignatureError`` or ``p.ProtocolError``.
        """
        signer = signer or self.signer
        resp = await self._post(url, p.dumps(message), signer)
        if resp.status_code != 200:
            raise p.ProtocolError(f"app answered HTTP {resp.status_code}: {resp.text[:200]}")
        signer.verify(resp.content, resp.headers)
        self.contacts[url] = time.time()
        return p.check_version(p.loads(resp.content))

    async def invoke(self, url: str, body: bytes, call_id: str,
                     signer: p.Signer | None = None, *, span: CallSpan | None = None,
                     run_id: str | None = None, app: str | None = None,
                     function: str | None = None) -> Outcome:
        """Deliver one invoke request signed by ``signer`` (the app's: ``signer_for``;
        default: the orchestrator's own); never raises for what the app or network did.
        With the call's ``span``, the request carries its ``traceparent``; ``run_id``,
        ``app`` and ``function`` only name the call in log lines."""
        bad = self.misconfigured.get(url)
        if bad is not None:
            return Failed(f"not sent: the app is misconfigured ({bad[0]})", kind="misconfigured")
        signer = signer or self.signer
        try:
            resp = await self._post(url, body, signer, span)
        except httpx.ConnectTimeout:
            return Failed(f"could not connect within {self.timeout}s", kind="connect")
        except httpx.TimeoutException:
            return Failed(f"no answer within {self.timeout}s", kind="timeout")
        except httpx.HTTPError as exc:
            return Failed(f"connection failed: {type(exc).__name__}: {exc}",
                          kind="connection")
        if resp.status_code == 401:  # the app does not accept our signature
            return self._misconfigured(url, f"app answered HTTP 401: {resp.text[:300]}",
                                       _extra(run_id, call_id, app, function))
        if resp.status_code != 200:
            return Failed(
                f"app answered HTTP {resp.status_code}: {resp.text[:300]}",
                parse_retry_after(resp.headers.get("retry-after")), kind="http_status",
            )
        if len(resp.content) > p.MAX_ANSWER_BYTES:
            return Failed(f"answer of {len(resp.content)} bytes exceeds {p.MAX_ANSWER_BYTES}",
                          kind="too_large")
        try:
            signer.verify(resp.content, resp.headers)
        except p.SignatureError as exc:
            extra = _extra(run_id, call_id, app, function)
            log.warning("discarded an answer to %s from %s: %s", call_id, url, exc,
                        extra=extra)
            return self._misconfigured(url, f"answer discarded: {exc}", extra)
        try:
            self.contacts[url] = time.time()  # an answer that verified: the app is there
            raw = p.loads(resp.content)
            if isinstance(raw, dict) and raw.get("status") == MEMO_NEEDED \
                    and raw.get("call_id") == call_id:
                return Failed("the app does not keep the head of the run's memo",
                              kind=MEMO_NEEDED)
            answer = p.parse_answer(raw, call_id)
        except (ValueError, p.ProtocolError) as exc:
            log.warning("discarded a malformed answer to %s from %s: %s", call_id, url, exc,
                        extra=_extra(run_id, call_id, app, function))
            return Failed(f"malformed answer: {exc}", kind="malformed")
        return Delivered(answer)

    def _misconfigured(self, url: str, reason: str,
                       extra: dict[str, str | None] | None = None) -> Failed:
        log.warning("app at %s is misconfigured (%s): no call is sent to it until a probe "
                    "verifies", url, reason, extra=extra)
        self.misconfigured[url] = (reason, time.time())
        return Failed(reason, kind="misconfigured")
