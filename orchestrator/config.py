"""Settings: one object, built from arguments and the environment, passed in."""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

DEV_KEYS_FILE = "dev-keys.env"
"""Where ``orchestrator dev`` keeps its keys: beside its SQLite database."""


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
    db_connect_wait: float = 60.0
    """Seconds start-up waits for a database it cannot reach yet (a PostgreSQL started
    at the same time, say) before it gives up with the reason."""
    db_pool_size: int = 40
    """PostgreSQL connections kept by this replica, plus a quarter of that opened for peaks
    (replicas x 1.25 x this must stay under the server's ``max_connections``, 100 by
    default). Requests in flight each need one at times: at 50 concurrent runs on two
    cores, 20 gave ~190 runs/s, 40 gave 205-320/s (a connection opened and closed for a
    peak costs ~5 ms of CPU)."""
    keep_alive: float = 75.0
    """Seconds an idle client connection is kept open. Longer than clients keep theirs
    (httpx: 5 s, the SDK: 4 s), so a client never sends a request on a connection the
    server is closing (uvicorn's default, 5 s, raced httpx's: 0.1-0.5 % of requests of
    clients pausing about 5 s failed with a connection error; bench/keepalive.py)."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest REST request body."""
    dev_keys_path: str | None = None
    """``orchestrator dev``: the file its keys are kept in (None: made for this session)."""
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
            keep_alive=_env_float("DURABLE_KEEP_ALIVE", cls.keep_alive),
            db_connect_wait=_env_float("DURABLE_DB_CONNECT_WAIT", cls.db_connect_wait),
            db_pool_size=int(_env_float("DURABLE_DB_POOL_SIZE", cls.db_pool_size)),
            allow_insecure_app_urls=env.get("DURABLE_ALLOW_INSECURE_APP_URLS", "").lower()
            in ("1", "true", "yes"),
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        return s


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may read (0700), created if missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


def private_files(folder: Path, *names: str) -> None:
    """Make the files ``names`` in ``folder`` that exist readable by their owner only."""
    for name in names:
        f = folder / name
        try:
            if stat.S_IMODE(f.stat().st_mode) & 0o077:
                f.chmod(0o600)
        except FileNotFoundError:
            pass


def dev_keys(folder: Path) -> dict[str, str]:
    """The dev keys kept in ``folder/dev-keys.env`` (0600, in a 0700 folder), generated
    on first use and the same on every later start, so runs in the dev database resume.
    ``orchestrator dev`` and ``make run`` both take their keys from here."""
    private_dir(folder)
    keys = folder / DEV_KEYS_FILE
    if not keys.exists():
        text = (f"DURABLE_SIGNING_KEY=dev-{secrets.token_urlsafe(24)}\n"
                f"DURABLE_API_KEY=dev-{secrets.token_urlsafe(18)}\n")
        try:
            fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it just now: read theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(text)
    private_files(folder, DEV_KEYS_FILE)
    out: dict[str, str] = {}
    for line in keys.read_text().splitlines():
        k, sep, v = line.strip().partition("=")
        if sep and k and not k.startswith("#"):
            out[k] = v
    return out
