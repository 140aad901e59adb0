from __future__ import annotations

import os

# Tests never reach beyond loopback.
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
