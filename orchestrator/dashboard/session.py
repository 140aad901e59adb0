"""The dashboard's session: an itsdangerous-signed, HttpOnly, SameSite=Lax cookie holding
the API key it was opened with and a per-session CSRF token. The key is checked again on
every request (``Keys.grant``), so a revoked key ends its sessions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE: Final = "durable_session"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"


def derive_secret(dashboard_secret: str | None, signing_key: str) -> str:
    """The secret signing session cookies: the setting, else one derived from the signing
    key, which every replica shares (so a session opened on one is valid on the others)."""
    if dashboard_secret:
        return dashboard_secret
    return hmac.new(signing_key.encode(), b"durable-dashboard-session",
                    hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    key: str
    csrf: str


class Sessions:
    def __init__(self, secret: str, max_age: int) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="durable-dashboard")
        self.max_age = max_age

    def new(self, key: str) -> tuple[Session, str]:
        s = Session(key, secrets.token_urlsafe(24))
        return s, self.serializer.dumps({"k": s.key, "c": s.csrf})

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        key, csrf = data.get("k"), data.get("c")
        if not isinstance(key, str) or not isinstance(csrf, str):
            return None
        return Session(key, csrf)

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(session.csrf, token)
