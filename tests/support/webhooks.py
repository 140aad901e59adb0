"""Real-shaped webhook deliveries (from the providers' documentation) and the headers
their providers send, signed exactly as they sign: for the tests and bench/webhooks.py."""

from __future__ import annotations

import hashlib
import hmac
import time

GITHUB_PUSH = {
    "ref": "refs/heads/main", "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    "repository": {"id": 1296269, "full_name": "octocat/Hello-World",
                   "owner": {"login": "octocat"}},
    "pusher": {"name": "octocat", "email": "octocat@github.com"},
    "commits": [{"id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
                 "message": "Update README.md", "author": {"name": "Monalisa"}}],
}
STRIPE_EVENT = {
    "id": "evt_3MtwBwLkdIwHu7ix28a3tqPa", "object": "event", "api_version": "2022-11-15",
    "created": 1680064028, "type": "payment_intent.succeeded", "livemode": False,
    "data": {"object": {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent",
                        "amount": 2000, "currency": "usd", "status": "succeeded"}},
}
SLACK_COMMAND = {
    "token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0001", "team_domain": "example",
    "channel_id": "C2147483705", "channel_name": "test", "user_id": "U2147483697",
    "user_name": "Steve", "command": "/weather", "text": "94070",
    "response_url": "https://hooks.slack.com/commands/1234/5678",
    "trigger_id": "13345224609.738474920.8088930838d88f008e0", "api_app_id": "A123456",
}


def github_headers(secret: str, body: bytes, delivery: str, event: str = "push",
                   content_type: str = "application/json") -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": content_type, "x-github-event": event,
            "x-github-delivery": delivery, "x-hub-signature-256": f"sha256={sig}",
            "user-agent": "GitHub-Hookshot/044aadd"}


def stripe_headers(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json; charset=utf-8",
            "stripe-signature": f"t={ts},v1={sig},v0={'0' * 64}"}


def slack_headers(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    sig = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": str(ts), "x-slack-signature": f"v0={sig}"}
