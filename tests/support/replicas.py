"""Several orchestrator replicas on one PostgreSQL database, and the test app they call.

``Replicas`` starts N orchestrator processes (each its own port and, being its own
process, its own worker id; all with the same signing and API keys) and one app process
whose step side effects go to ``effects``. Replicas can be killed (SIGKILL), stopped
(SIGSTOP) and continued, or started again; each one's calls are counted from its own
``/metrics``. A fault-injection harness can build on it: every process is a
``procs.Proc``, and nothing here assumes which of them are running.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sdk import Client
from tests.support import procs

APP = "tests.apps.replica_app:app"
ADMIN = {"authorization": f"Bearer {procs.API_KEY}"}


@dataclass
class Replica:
    proc: procs.Proc
    base: str
    """The replica's root URL (``http://127.0.0.1:<port>``)."""

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def client(self) -> Client:
        return Client(orchestrator_url=self.base, api_key=procs.API_KEY,
                      signing_key=procs.SIGNING_KEY)

    def rest(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"{self.base}/api/v1", timeout=30, headers=ADMIN)

    def kill(self) -> None:
        """SIGKILL: no shutdown, its leases stay until they expire."""
        self.proc.kill9()

    def pause(self) -> None:
        """SIGSTOP: alive (its connections open) but doing nothing."""
        assert self.proc.proc is not None
        self.proc.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc.proc is not None
        self.proc.proc.send_signal(signal.SIGCONT)

    def wait_registered(self, function: str = "slow-effects", timeout: float = 20.0) -> None:
        """Wait until this replica knows the app (``dev --app`` registers it once up)."""
        deadline = time.monotonic() + timeout
        while httpx.get(f"{self.base}/api/v1/functions/{function}", headers=ADMIN,
                        timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.base} did not register the app:\n{self.proc.log()}")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None

    def calls(self) -> int:
        """Calls this replica made to apps (its ``durable_call_duration_seconds_count``)."""
        text = httpx.get(f"{self.base}/metrics", headers=ADMIN, timeout=10).text
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("durable_call_duration_seconds_count")))


@dataclass
class Replicas:
    """N orchestrators on ``db_url`` and one app, started by ``start`` (or ``replicas``)."""

    tmp: Path
    db_url: str
    n: int = 3
    lease_ttl: float | None = 2.0
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of every replica (``DURABLE_*`` settings, test hooks)."""
    app_module: str = APP
    app: procs.Proc | None = None
    app_url: str = ""
    nodes: list[Replica] = field(default_factory=list)

    @property
    def effects(self) -> Path:
        """One line per execution of a step's body: ``<run id> <step> <unix time>``."""
        return self.tmp / "effects.log"

    def start(self) -> Replicas:
        self.app, self.app_url = procs.app(self.tmp, self.app_module, extra_env={
            "TESTAPP_EFFECTS": str(self.effects), "TESTAPP_FLAGS": str(self.tmp)})
        self.app.start()
        if self.n:
            self.add()  # alone: replicas creating the schema at once race (CREATE TABLE)
        with ThreadPoolExecutor(max(1, self.n - 1)) as pool:  # the others side by side
            list(pool.map(lambda _: self.add(), range(self.n - 1)))
        return self

    def add(self, env: Mapping[str, str] | None = None) -> Replica:
        """Start one more replica (it registers the app on start)."""
        proc, base = procs.orchestrator(self.tmp, db_url=self.db_url, app_url=self.app_url,
                                        lease_ttl=self.lease_ttl,
                                        extra_env={**self.env, **(env or {})})
        node = Replica(proc, base)
        self.nodes.append(node)
        proc.start()
        node.wait_registered()
        return node

    def __getitem__(self, i: int) -> Replica:
        return self.nodes[i]

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.nodes)

    def alive(self) -> list[Replica]:
        return [r for r in self.nodes if r.alive]

    def calls(self) -> list[int]:
        """Calls made by each replica still alive, in order."""
        return [r.calls() for r in self.alive()]

    def executions(self) -> Counter[tuple[str, str]]:
        """How many times each (run id, step) body ran, from the effects log."""
        if not self.effects.exists():
            return Counter()
        return Counter(tuple(line.split()[:2]) for line in  # type: ignore[misc]
                       self.effects.read_text().splitlines())

    def logs(self) -> str:
        return "\n".join(f"--- {r.base}\n{r.proc.log()[-3000:]}" for r in self.nodes)

    def stop(self) -> None:
        for r in self.nodes:
            if r.alive:
                r.resume()  # a stopped process would not hear SIGTERM
            r.proc.stop()
        if self.app is not None:
            self.app.stop()


@contextmanager
def replicas(n: int, db_url: str, tmp: Path, *, lease_ttl: float | None = 2.0,
             env: Mapping[str, str] | None = None, app: str = APP) -> Iterator[Replicas]:
    """``n`` orchestrator replicas on ``db_url`` and the app, stopped afterwards."""
    group = Replicas(tmp, db_url, n, lease_ttl, dict(env or {}), app)
    try:
        yield group.start()
    finally:
        group.stop()
