"""What a webhook delivery costs before its transaction: verifying the signature, reading
the body and mapping it to an event (``orchestrator/engine/webhooks.py``).

    python -m bench.webhooks [--repeat 5] [--number 20000]

Per kind, a real-shaped delivery (GitHub push JSON, Stripe payment_intent.succeeded,
Slack slash command form) signed as the provider signs it; prints microseconds per
delivery, best of ``--repeat``. The end-to-end latency (HTTP, the event's transaction)
is printed by ``pytest -s -k "sqlite and latency" tests/e2e/test_webhooks.py``.
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from collections.abc import Callable
from urllib.parse import urlencode

from orchestrator.engine import webhooks as w
from tests.support.webhooks import (
    GITHUB_PUSH,
    SLACK_COMMAND,
    STRIPE_EVENT,
    github_headers,
    slack_headers,
    stripe_headers,
)


def delivery(kind: w.Kind, headers: dict[str, str], body: bytes) -> Callable[[], object]:
    lower = {k.lower(): v for k, v in headers.items()}
    rules = w.DEFAULTS[kind]
    now = time.time()

    def one() -> object:
        w.verify(kind, ["secret"], lower, body, now, w.Signature(), w.DEFAULT_TOLERANCE)
        return w.event_of("src", rules.event, rules.id, lower,
                          w.parse_body(lower["content-type"], body))
    return one


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args()
    gh = json.dumps(GITHUB_PUSH).encode()
    st = json.dumps(STRIPE_EVENT, indent=2).encode()
    sl = urlencode(SLACK_COMMAND).encode()
    cases = {
        "github push (JSON)": delivery("github", github_headers("secret", gh, "d"), gh),
        "stripe payment_intent.succeeded": delivery("stripe", stripe_headers("secret", st),
                                                    st),
        "slack slash command (form)": delivery("slack", slack_headers("secret", sl), sl),
    }
    sizes = {"github push (JSON)": len(gh), "stripe payment_intent.succeeded": len(st),
             "slack slash command (form)": len(sl)}
    for name, fn in cases.items():
        best = min(timeit.repeat(fn, number=args.number, repeat=args.repeat)) / args.number
        print(f"{name:34} {sizes[name]:5} B  {best * 1e6:6.1f} us per delivery")


if __name__ == "__main__":
    main()
