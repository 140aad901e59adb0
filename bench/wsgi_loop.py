"""Why ``sdk.wsgi`` owns one event loop per process: a WSGI call's cost, in process,
under three ways of running the async core from a sync thread.

``python -m bench.wsgi_loop --calls 2000 --rounds 3`` times one signed invoke request of
a trivial async function through ``serve_wsgi`` (median per call), alternating: the
adapter's loop thread (what ships), ``asyncio.run`` per request, and a loop per WSGI
thread run in that thread (no hop between threads, but the core's replay cache would be
shared by several loops' threads, which it is not written for).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from sdk import wsgi
from tests.support.wsgi_call import wsgi_call
from tests.unit.test_adapters import CLIENT, FUNCTIONS, SIGNER, invoke_body

T = TypeVar("T")


class PerRequest:
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)


class PerThread:
    local = threading.local()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = getattr(self.local, "loop", None)
        if loop is None:
            loop = self.local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)  # type: ignore[no-any-return]


def per_call(runner: Any, calls: int, label: str) -> float:
    wsgi._LOOP = runner
    app = wsgi.serve_wsgi(CLIENT, FUNCTIONS)
    times = []
    for i in range(calls):
        body = invoke_body("hello", "x", f"{label}-{i}-{time.time()}")
        headers = SIGNER.sign(body)
        t = time.perf_counter()
        status, _, _ = wsgi_call(app, "POST", body, headers)
        times.append(time.perf_counter() - t)
        assert status == 200
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for r in range(args.rounds):
        owned = per_call(wsgi._LoopThread(), args.calls, f"owned{r}")
        run = per_call(PerRequest(), args.calls, f"run{r}")
        thread = per_call(PerThread(), args.calls, f"thread{r}")
        print(f"round {r}: owned loop thread {owned:.0f} us, asyncio.run per request "
              f"{run:.0f} us, loop per WSGI thread {thread:.0f} us")


if __name__ == "__main__":
    main()
