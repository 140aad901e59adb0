"""A throwaway PostgreSQL cluster in a temp dir (as a non-root user: the server refuses
root). The binaries come from the machine's PostgreSQL 15 install."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from tests.support.procs import free_port

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class PgCluster:
    def __init__(self, *, stat_statements: bool = False, durable: bool = False) -> None:
        self.stat_statements = stat_statements
        """Load ``pg_stat_statements`` (statement counts per database: the idle bench)."""
        self.durable = durable
        """The server's default durability (``fsync``, ``synchronous_commit`` and
        ``full_page_writes`` on: every commit waits for its WAL flush), as benchmarks of
        a production setup need; the tests' default is off (fast, and a crash of the test
        machine loses nothing anyone keeps)."""
        self.root = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self._n = 0

    def _run(self, *args: str) -> None:
        cmd = [str(a) for a in args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def start(self) -> PgCluster:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(BIN / "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        self._run(BIN / "pg_ctl", "-D", str(self.data), "-o", self._server_opts(), "-w",
                  "-l", str(self.root / "log"), "start")
        return self

    def _server_opts(self) -> str:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        if self.stat_statements:
            opts += " -c shared_preload_libraries=pg_stat_statements"
        return opts

    def halt(self) -> None:
        """Stop the server (``-m fast``: sessions are ended, as in a restart); the data
        stays for ``resume``."""
        self._run(BIN / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server again after ``halt``, on the same port and data."""
        self._run(BIN / "pg_ctl", "-D", str(self.data), "-o", self._server_opts(), "-w",
                  "-l", str(self.root / "log"), "start")

    def restart(self, down: float = 0.0) -> None:
        """Stop the server, keep it down ``down`` seconds, start it again."""
        self.halt()
        time.sleep(down)
        self.resume()

    def create_db(self) -> str:
        """A fresh database; its SQLAlchemy URL."""
        self._n += 1
        name = f"t{self._n}"
        self._run(BIN / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def postmaster_pid(self) -> int:
        """The server's main process (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    async def settings(self, names: tuple[str, ...] = (
            "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
            "shared_buffers", "server_version")) -> dict[str, str]:
        """The server's current values of ``names`` (what a benchmark ran against)."""
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            return {n: str(await conn.fetchval(f"SHOW {n}")) for n in names}
        finally:
            await conn.close()

    def stop(self) -> None:
        try:
            self._run(BIN / "pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def statement_counts(url: str, *, reset: bool = False) -> dict[str, int]:
    """Statements run on the database of ``url`` since the last reset, by query text
    (``pg_stat_statements``, which the cluster must load: ``stat_statements=True``); read
    from the ``postgres`` database, so the reading itself is not counted. ``reset``:
    start counting afresh instead."""
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            await conn.execute("SELECT pg_stat_statements_reset()")
            return {}
        rows = await conn.fetch(
            "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d "
            "ON d.oid = s.dbid WHERE d.datname = $1", name)
        return {r["query"]: int(r["calls"]) for r in rows}
    finally:
        await conn.close()


async def statement_times(url: str) -> list[tuple[str, int, float]]:
    """(query, calls, total execution milliseconds) of the statements run on the database
    of ``url`` since the last reset, most time first (``pg_stat_statements``, as
    ``statement_counts``)."""
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        rows = await conn.fetch(
            "SELECT query, calls, total_exec_time + total_plan_time AS ms "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = $1 ORDER BY ms DESC", name)
        return [(r["query"], int(r["calls"]), float(r["ms"])) for r in rows]
    finally:
        await conn.close()
