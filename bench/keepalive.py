"""Dropped connections under load: ``concurrency`` keep-alive clients (httpx's default
transport, as an outside caller has, and the SDK's client) send ``POST /events`` with
idle pauses around the orchestrator's keep-alive timeout; count client-side connection
errors. A request sent just as the server closes its idle connection fails on the
client, though the server never saw it.

    python -m bench.keepalive [--concurrency 150] [--seconds 30] [--keep-alive S]

``--keep-alive`` sets the orchestrator's (DURABLE_KEEP_ALIVE; unset: its default).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from sdk import Client
from tests.support import procs


async def _httpx_client(base: str, stop: float, errors: Counter[str], ok: list[int],
                        pause: tuple[float, float]) -> None:
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30,
                                 headers={"authorization": f"Bearer {procs.API_KEY}"}) as c:
        while time.monotonic() < stop:
            try:
                r = await c.post("/events", json={"name": "bench.keepalive", "data": {}})
                r.raise_for_status()
                ok[0] += 1
            except httpx.TransportError as exc:
                errors[f"httpx {type(exc).__name__}"] += 1
            await asyncio.sleep(random.uniform(*pause))


async def _sdk_client(client: Client, stop: float, errors: Counter[str], ok: list[int],
                      pause: tuple[float, float]) -> None:
    while time.monotonic() < stop:
        try:
            await client.send_event("bench.keepalive", {})
            ok[0] += 1
        except httpx.TransportError as exc:
            errors[f"sdk {type(exc).__name__}"] += 1
        await asyncio.sleep(random.uniform(*pause))


async def _main(concurrency: int, seconds: float, base: str) -> None:
    errors: Counter[str] = Counter()
    ok = [0]
    stop = time.monotonic() + seconds
    client = Client(orchestrator_url=base, api_key=procs.API_KEY,
                    signing_key=procs.SIGNING_KEY)
    # pauses straddling uvicorn's idle timeout (5 s) and httpx's keep-alive expiry (5 s)
    pause = (4.9, 5.1)
    try:
        await asyncio.gather(
            *(_httpx_client(base, stop, errors, ok, pause) for _ in range(concurrency // 2)),
            *(_sdk_client(client, stop, errors, ok, pause)
              for _ in range(concurrency - concurrency // 2)))
    finally:
        await client.aclose()
    total = ok[0] + sum(errors.values())
    print(f"requests {total}, ok {ok[0]}, connection errors {sum(errors.values())} "
          f"({100 * sum(errors.values()) / max(total, 1):.2f} %) {dict(errors)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--keep-alive", type=float, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-keepalive-"))
    env = {} if args.keep_alive is None else {"DURABLE_KEEP_ALIVE": str(args.keep_alive)}
    orch, base = procs.orchestrator(tmp, lease_ttl=None, extra_env=env)
    orch.start()
    try:
        asyncio.run(_main(args.concurrency, args.seconds, base))
    finally:
        orch.stop()


if __name__ == "__main__":
    main()
