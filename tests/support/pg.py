"""A throwaway PostgreSQL cluster in a temp dir (as a non-root user: the server refuses
root). The binaries come from the machine's PostgreSQL 15 install."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.procs import free_port

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class PgCluster:
    def __init__(self) -> None:
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
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        self._run(BIN / "pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-l",
                  str(self.root / "log"), "start")
        return self

    def create_db(self) -> str:
        """A fresh database; its SQLAlchemy URL."""
        self._n += 1
        name = f"t{self._n}"
        self._run(BIN / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(BIN / "pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
