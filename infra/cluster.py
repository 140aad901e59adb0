"""A local cluster on loopback: a throwaway PostgreSQL, N ``orchestrator serve`` replicas
sharing it (one signing key, one database URL) and the example app, registered.

    python -m infra.cluster --replicas 3        # or: python infra/cluster.py

prints the URLs and an API key, and runs until Ctrl-C or SIGTERM, which stop everything.

``Cluster`` is the same as a Python API, for tests and fault injection: every server is
a subprocess of its own (``Process``) that can be SIGKILLed and started again on the
same port, PostgreSQL can be stopped and restarted, and each writes its log to a file in
the cluster's folder. Standard library only: it starts the project's servers with the
same interpreter (``sys.executable``), the repository on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
APP_TARGET = "examples.functions.app:app"
DB_NAME = "durable"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, key: str | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    """One request; its status and JSON body (None if the body is not JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


class Process:
    """One server of the cluster, a subprocess in its own session (a Ctrl-C in the
    terminal reaches the cluster script, which stops it, not the server directly). Its
    output is appended to ``log`` across restarts."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], health: str,
                 log: Path, cwd: Path) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.health = health
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until ``health`` answers 200."""
        if self.running:
            raise RuntimeError(f"{self.name} is running already")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.tail()}")
            try:
                if http("GET", self.health, timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"{self.name} did not answer {self.health} within {timeout} s:"
                           f"\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM, without waiting (``wait`` then)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout: float = 15.0) -> None:
        """Wait for it to exit; SIGKILL it when ``timeout`` passes first."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a graceful shutdown), SIGKILL after ``timeout``."""
        self.terminate()
        self.wait(timeout)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Postgres:
    """A throwaway PostgreSQL cluster in ``root``, on 127.0.0.1:``port``. As root it
    runs as the ``postgres`` user (the server refuses root), in a folder of its own that
    user can reach."""

    def __init__(self, root: Path, port: int, *, max_connections: int = 100,
                 bin_dir: Path = PG_BIN) -> None:
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            try:
                self._pw: pwd.struct_passwd | None = pwd.getpwnam(self.user)
            except KeyError:
                raise RuntimeError("running as root needs a 'postgres' user to run "
                                   "PostgreSQL as (the server refuses root)") from None
            # the caller's folder may sit under one only root can enter (pytest's)
            self.root = Path(tempfile.mkdtemp(prefix="durable-pg-"))
            os.chown(self.root, self._pw.pw_uid, self._pw.pw_gid)
            (root / "postgres").symlink_to(self.root)
        else:
            self._pw = None
            self.root = root / "postgres"
            self.root.mkdir(mode=0o700)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = port
        self.max_connections = max_connections
        self.bin = bin_dir

    def _run(self, *args: str) -> str:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}")
        return done.stdout

    def init(self) -> None:
        if not (self.bin / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL server binaries in {self.bin} (set PG_BIN)")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        # fsync off: a throwaway cluster need not survive the machine crashing, only a
        # server crash (restart_postgres("immediate")), and the kernel keeps the writes
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                f"-c fsync=off -c max_connections={self.max_connections}")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t", "60",
                  "-l", str(self.log), "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (disconnect clients, clean shutdown) or ``immediate`` (a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def create_db(self, name: str) -> str:
        """Create database ``name``; its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self, cluster_root: Path) -> None:
        """Delete the data; the log stays, as ``cluster_root/postgres.log`` when the
        cluster lived in a folder of its own (as root)."""
        if self.user:
            link = cluster_root / "postgres"
            if link.is_symlink():
                link.unlink()
            if self.log.exists():
                shutil.copyfile(self.log, cluster_root / "postgres.log")
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            shutil.rmtree(self.data, ignore_errors=True)


class Cluster:
    """PostgreSQL, ``replicas`` orchestrators and (``app``) the example app, all on
    127.0.0.1. Ports are chosen once, so a replica restarted comes back on its own.

    ``root``: the cluster's folder (logs, PostgreSQL's data or a link to it); by default
    a temp folder, removed by ``stop`` unless ``keep``. A folder given is kept.
    ``env`` is added to every server's environment, ``app_env`` to the app's only;
    ``app_target`` serves another app (``module:attribute``, answering ``GET /``).
    """

    def __init__(self, replicas: int = 2, *, root: Path | None = None, app: bool = True,
                 keep: bool = False, db_pool_size: int = 10, lease_ttl: float | None = None,
                 log_level: str = "warning", port: int | None = None,
                 app_port: int | None = None, env: Mapping[str, str] | None = None,
                 app_target: str = APP_TARGET, app_env: Mapping[str, str] | None = None
                 ) -> None:
        if replicas < 1:
            raise ValueError("a cluster has at least one replica")
        self.root = root if root is not None else Path(tempfile.mkdtemp(
            prefix="durable-cluster-"))
        self._remove_root = root is None and not keep
        self.keep = keep
        self.api_key = "cluster-" + secrets.token_urlsafe(18)
        self.signing_key = "cluster-signing-" + secrets.token_urlsafe(24)
        self.db_pool_size = db_pool_size
        self.lease_ttl = lease_ttl
        self.log_level = log_level
        self.ports = ([port + i for i in range(replicas)] if port
                      else [free_port() for _ in range(replicas)])
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.app_port = (app_port or free_port()) if app else None
        self.app_url = (f"http://127.0.0.1:{self.app_port}/api/durable" if app else None)
        self.extra_env = dict(env or {})
        # the app: another ASGI app (``module:attr``) and its own environment, if given
        self.app_target = app_target
        self.app_env = dict(app_env or {})
        # each replica: pool_size + its overflow (store/db.py: max(2, pool // 4)), plus
        # the migration and some headroom (docs/operations.md)
        per_replica = db_pool_size + max(2, db_pool_size // 4)
        self._max_connections = max(50, replicas * per_replica + 20)
        self.pg: Postgres | None = None
        self.db_url = ""
        self.replicas: list[Process] = []
        self.app: Process | None = None
        self.functions: list[str] = []
        self.migrated = False

    # -- whole cluster --------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start everything: PostgreSQL, the schema (``orchestrator migrate`` when there
        is such a command), replica 0, the others, the app, registered through replica 0.
        A failure stops what had started and raises, with the log's last lines."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.pg = Postgres(self.root, free_port(), max_connections=self._max_connections)
            self.pg.init()
            self.pg.start()
            self.db_url = self.pg.create_db(DB_NAME)
            self.migrated = self._migrate()
            self.replicas = [self._replica(i) for i in range(len(self.ports))]
            # replica 0 alone first: without a migration, it creates the schema (several
            # at once would race to)
            self.replicas[0].start()
            for r in self.replicas[1:]:
                r.start()
            if self.app_url is not None:
                self.app = self._app()
                self.app.start()
                self.register_app()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything (SIGTERM, SIGKILL after 15 s; PostgreSQL ``fast``), then
        remove the temp folder unless it is kept. Safe to call twice."""
        for r in self.replicas:
            r.terminate()
        for r in self.replicas:
            r.wait()
        if self.app is not None:
            self.app.stop()
        if self.pg is not None:
            try:
                self.pg.stop("fast")
            finally:
                if not self.keep:
                    self.pg.remove(self.root)
        if self._remove_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """The pids of every process of the cluster that runs now."""
        procs = [*self.replicas, *([self.app] if self.app else [])]
        pids = [p.pid for p in procs if p.running and p.pid is not None]
        pg = self.pg.pid() if self.pg else None
        return pids + ([pg] if pg else [])

    # -- faults ---------------------------------------------------------------------------

    def kill_replica(self, i: int) -> None:
        """SIGKILL replica ``i`` (its leases expire; another replica takes its runs)."""
        self.replicas[i].kill()

    def stop_replica(self, i: int) -> None:
        """SIGTERM replica ``i``: a graceful shutdown."""
        self.replicas[i].stop()

    def start_replica(self, i: int, timeout: float = 30.0) -> None:
        """Start replica ``i`` again (same port), and wait until it is ready."""
        self.replicas[i].start(timeout)

    def kill_app(self) -> None:
        assert self.app is not None, "the cluster has no app"
        self.app.kill()

    def start_app(self) -> None:
        assert self.app is not None, "the cluster has no app"
        self.app.start()

    def stop_postgres(self, mode: str = "fast") -> None:
        """``fast`` or ``immediate`` (a crash: no checkpoint, clients cut off)."""
        assert self.pg is not None
        self.pg.stop(mode)

    def start_postgres(self) -> None:
        assert self.pg is not None
        self.pg.start()

    def restart_postgres(self, mode: str = "fast") -> None:
        """Stop PostgreSQL (``mode``) and start it again on the same port."""
        self.stop_postgres(mode)
        self.start_postgres()

    # -- the parts ------------------------------------------------------------------------

    def api(self, i: int = 0) -> str:
        """Replica ``i``'s REST API base URL."""
        return f"{self.urls[i]}/api/v1"

    def register_app(self, via: int = 0) -> list[str]:
        """Register (sync) the example app through replica ``via``; its functions."""
        assert self.app_url is not None, "the cluster has no app"
        status, body = http("POST", f"{self.api(via)}/apps", {"url": self.app_url},
                            key=self.api_key, timeout=30)
        if status != 200:
            raise RuntimeError(f"registering {self.app_url} answered {status}: {body}")
        self.functions = [f["name"] for f in body["functions"]]
        return self.functions

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
        env.update({"PYTHONPATH": os.pathsep.join(filter(None, [
                        str(ROOT), os.environ.get("PYTHONPATH")])),
                    "DURABLE_API_KEY": self.api_key,
                    "DURABLE_SIGNING_KEY": self.signing_key})
        env.update(self.extra_env)
        return env

    def _orchestrator(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "orchestrator", *args]

    def _migrate(self) -> bool:
        """Run ``orchestrator migrate`` if this version has it; whether it did."""
        env = {**self._env(), "DURABLE_DATABASE_URL": self.db_url}
        probe = subprocess.run(self._orchestrator("migrate", "--help"), env=env,
                               cwd=self.root, capture_output=True)
        if probe.returncode != 0:
            return False  # no such command: `serve` creates the schema
        log = self.root / "migrate.log"
        with open(log, "ab") as out:
            done = subprocess.run(self._orchestrator("migrate"), env=env, cwd=self.root,
                                  stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"orchestrator migrate failed ({done.returncode}):\n"
                               f"{log.read_text(errors='replace')}")
        return True

    def _replica(self, i: int) -> Process:
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.ports[i]),
                "--database-url", self.db_url, "--log-level", self.log_level]
        if self.lease_ttl is not None:
            args += ["--lease-ttl", str(self.lease_ttl)]
        env = {"DURABLE_DB_POOL_SIZE": str(self.db_pool_size), **self._env()}
        # the working folder: the cluster's, so no stray ./.env is read
        return Process(f"replica {i}", self._orchestrator(*args), env,
                       f"{self.urls[i]}/readyz", self.root / f"replica-{i}.log", self.root)

    def _app(self) -> Process:
        assert self.app_port is not None
        env = {"ORDERS_FOLLOWUP_DELAY_S": "10", "ORDERS_DELIVERY_TIMEOUT_S": "300",
               **self._env(), "DURABLE_ORCHESTRATOR_URL": self.urls[0]}
        for k in ("ORDERS_FOLLOWUP_DELAY_S", "ORDERS_DELIVERY_TIMEOUT_S"):
            env[k] = os.environ.get(k, env[k])
        env.update(self.app_env)
        args = [sys.executable, "-m", "uvicorn", self.app_target, "--host", "127.0.0.1",
                "--port", str(self.app_port), "--log-level", self.log_level]
        return Process("example app", args, env, f"http://127.0.0.1:{self.app_port}/",
                       self.root / "app.log", self.root)


# -- the command ----------------------------------------------------------------------------

class _Stop(Exception):
    """SIGTERM/SIGHUP: stop the cluster, as Ctrl-C does."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def _banner(c: Cluster) -> str:
    assert c.pg is not None
    lines = ["", f"  PostgreSQL      {c.db_url}   (log: {c.pg.log})"]
    for i, url in enumerate(c.urls):
        lines.append(f"  replica {i:<7} {url}   (REST {url}/api/v1, log: "
                     f"{c.replicas[i].log})")
    if c.app_url:
        lines.append(f"  example app     {c.app_url}   (functions: {', '.join(c.functions)})")
    lines += [
        f"  API key         {c.api_key}",
        f"  signing key     {c.signing_key}",
        f"  schema          {'orchestrator migrate' if c.migrated else 'created by serve'}",
        "",
        f"  export DURABLE_ORCHESTRATOR_URL={c.urls[0]} DURABLE_API_KEY={c.api_key}",
        f"  curl -s -X POST 'http://127.0.0.1:{c.ports[-1]}/api/v1/runs?wait=10' \\",
        f"    -H 'Authorization: Bearer {c.api_key}' -H 'content-type: application/json' \\",
        "    -d '{\"function\": \"send-notification\", \"input\": {\"to\": \"ada@example.com\"}}'",
        "",
        f"  Logs in {c.root}. Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    prog = "python -m infra.cluster"
    ap = argparse.ArgumentParser(prog=prog, description="PostgreSQL, N orchestrator "
                                 "replicas and the example app on 127.0.0.1")
    ap.add_argument("--replicas", type=int, default=2, help="orchestrator replicas (2)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="the cluster's folder, kept (default: a temp folder, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder on exit")
    ap.add_argument("--port", type=int, default=None,
                    help="replica 0's port, the others' following it (default: free ports)")
    ap.add_argument("--app-port", type=int, default=None, help="the example app's port")
    ap.add_argument("--no-app", action="store_true", help="no example app")
    ap.add_argument("--pool-size", type=int, default=10,
                    help="DURABLE_DB_POOL_SIZE of each replica (10)")
    ap.add_argument("--log-level", default="info", help="the servers' log level (info)")
    args = ap.parse_args(argv)
    if args.replicas < 1 or args.pool_size < 1:
        ap.error("--replicas and --pool-size must be at least 1")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    cluster = Cluster(args.replicas, root=args.dir, app=not args.no_app, keep=args.keep,
                      db_pool_size=args.pool_size, log_level=args.log_level,
                      port=args.port, app_port=args.app_port)
    try:
        print(f"{prog}: starting PostgreSQL, {args.replicas} replicas"
              f"{'' if args.no_app else ' and the example app'} in {cluster.root}",
              flush=True)
        cluster.start()
        print(_banner(cluster), flush=True)
        reported: set[str] = set()
        while True:
            for p in [*cluster.replicas, *([cluster.app] if cluster.app else [])]:
                if not p.running and p.name not in reported:
                    reported.add(p.name)
                    print(f"  ! {p.name} exited: see {p.log}", file=sys.stderr, flush=True)
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one: still stop it all
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"{prog}: stopping", file=sys.stderr, flush=True)
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
