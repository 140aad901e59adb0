"""Settings: one object, built from arguments and the environment, passed in."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field


def _env_float(name: str, default: float) -> float:
    v = os.environ.get(name)
    return float(v) if v else default


@dataclass
class Settings:
    database_url: str = "sqlite:///.durable/dev.db"
    host: str = "127.0.0.1"
    port: int = 8288
    api_keys: list[str] = field(default_factory=list)
    signing_key: str = ""
    signing_key_fallback: str | None = None
    call_timeout: float = 60.0
    """Seconds an app may take to answer one call."""
    lease_ttl: float = 10.0
    """A claim's lease; renewed while the call is in flight, taken over once expired."""
    max_inflight: int = 256
    """Calls in flight at once from this replica."""
    pool_per_app: int = 64
    """Connections kept per app origin."""
    poll_interval: float = 1.0
    """Longest idle sleep of the dispatcher between looks at the queue."""
    unreachable_timeout: float = 3600.0
    """A run whose app stays unreachable this long fails."""
    delivery_backoff_max: float = 30.0
    """Longest delay between delivery attempts to an unreachable app."""
    cron_grace: float = 60.0
    """A cron tick missed while no orchestrator ran fires once on start if this recent."""
    db_pool_size: int = 40
    """PostgreSQL connections kept by this replica, plus a quarter of that opened for peaks
    (replicas x 1.25 x this must stay under the server's ``max_connections``, 100 by
    default). Requests in flight each need one at times: at 50 concurrent runs on two
    cores, 20 gave ~190 runs/s, 40 gave 205-320/s (a connection opened and closed for a
    peak costs ~5 ms of CPU)."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest REST request body."""
    allow_insecure_app_urls: bool = False
    """Accept plain-http app URLs on public addresses (loopback and private are always
    accepted); see ``registration.check_app_url``."""
    worker_id: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def budget_ms(self) -> int:
        """Time budget handed to the app for one call (it yields before it is spent)."""
        return int(self.call_timeout * 1000 * 0.5)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        s = cls(
            database_url=env.get("DURABLE_DATABASE_URL", cls.database_url),
            api_keys=[k for k in env.get("DURABLE_API_KEYS", env.get("DURABLE_API_KEY", ""))
                      .split(",") if k],
            signing_key=env.get("DURABLE_SIGNING_KEY", ""),
            signing_key_fallback=env.get("DURABLE_SIGNING_KEY_FALLBACK") or None,
            call_timeout=_env_float("DURABLE_CALL_TIMEOUT", cls.call_timeout),
            lease_ttl=_env_float("DURABLE_LEASE_TTL", cls.lease_ttl),
            unreachable_timeout=_env_float("DURABLE_UNREACHABLE_TIMEOUT",
                                           cls.unreachable_timeout),
            delivery_backoff_max=_env_float("DURABLE_DELIVERY_BACKOFF_MAX",
                                            cls.delivery_backoff_max),
            db_pool_size=int(_env_float("DURABLE_DB_POOL_SIZE", cls.db_pool_size)),
            allow_insecure_app_urls=env.get("DURABLE_ALLOW_INSECURE_APP_URLS", "").lower()
            in ("1", "true", "yes"),
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        return s
