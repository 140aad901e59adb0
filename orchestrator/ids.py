"""Time-ordered ids: 12 hex digits of milliseconds, then 20 random hex digits."""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"
