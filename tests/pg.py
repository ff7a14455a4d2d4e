"""A throwaway PostgreSQL cluster for the test suite.

`postgres_cluster()` runs initdb into a temporary directory, starts the server
on a free port of 127.0.0.1 with trust authentication, creates a database and
yields its SQLAlchemy URL; on exit it stops the server and deletes everything.
Nothing outside the temporary directory is touched, so no running service or
configuration of the machine is needed: only the server binaries, which
`.ci/ensure-postgres` installs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

#: The superuser initdb creates; trust auth means no password.
SUPERUSER = "postgres"
#: The unprivileged OS account that runs the server when tests run as root.
OS_USER = "postgres"
_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_START_TIMEOUT_S = 60
# The largest test writes ~330 MB of bodies, plus WAL up to max_wal_size.
_SHM_MIN_FREE = 4 << 30
_PREFIX = "pseudowa-pg-"
_OWNER_FILE = "owner.pid"  # the test process; lets a later run reap a killed run's cluster

# Durability is worthless for a cluster deleted after the run; speed is not.
_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "max_wal_size": "512MB",
    "max_connections": "50",
    "log_min_messages": "warning",
    # Segments in the data directory, not /dev/shm: deleting the directory
    # then removes everything the server made, even after a crash.
    "dynamic_shared_memory_type": "mmap",
}


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the cluster would not start."""


def _has_programs(directory: Path) -> bool:
    return all(os.access(directory / p, os.X_OK) for p in _PROGRAMS)


def _version_key(directory: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<ver>/bin: sort "9.6" < "15" < "16" numerically.
    parts = directory.parent.name.split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None.

    $PATH first, then Debian's /usr/lib/postgresql/<ver>/bin, newest first.
    Symlinks are resolved because pg_ctl finds `postgres` next to its real path.
    """
    found = shutil.which("initdb")
    if found:
        directory = Path(found).resolve().parent
        if _has_programs(directory):
            return directory
    candidates = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if _has_programs(d)]
    if candidates:
        return max(candidates, key=_version_key)
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _ensure_os_user() -> pwd.struct_passwd:
    """The account to run the server as root; created when the package did not."""
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(OS_USER)


def _traversable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can reach `path` (every ancestor has o+x)."""
    for p in (path, *path.parents):
        if not p.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _base_dir() -> Path:
    # tmpfs when there is room: on a disk, CREATE DATABASE (once per test)
    # takes ~0.3 s even with fsync off; in memory, ~0.04 s.
    shm = Path("/dev/shm")
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= _SHM_MIN_FREE:
            return shm
    except OSError:
        pass
    base = Path(tempfile.gettempdir()).resolve()
    # As root the server runs as another user, who must be able to reach the
    # data directory: a $TMPDIR under /root would not do.
    if _is_root() and not _traversable_by_others(base):
        base = Path("/tmp")
    return base


class _Runner:
    """Runs the server programs, as the `postgres` account when we are root."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.account = _ensure_os_user() if _is_root() else None

    def run(self, program: str, *args: str, timeout: float = _START_TIMEOUT_S) -> None:
        cmd = [str(self.bin_dir / program), *args]
        if self.account is not None:
            # initdb, pg_ctl and postgres all refuse to run as root.
            cmd = ["runuser", "-u", self.account.pw_name, "--", *cmd]
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            # A C locale keeps initdb from depending on the machine's locales.
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            cwd="/",
        )
        if proc.returncode != 0:
            raise PostgresUnavailable(
                f"{program} failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )

    def give(self, path: Path) -> None:
        """Hand `path` to the server's account."""
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)


def _log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace").strip()[-2000:]
    except OSError:
        return "(no server log)"


def _wait_accepting(port: int, deadline: float) -> None:
    # pg_ctl -w already waits; this guards against a port taken meanwhile by
    # another process that would answer instead of our server.
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", connect_timeout=5
            ):
                return
        except psycopg.OperationalError as e:
            last = e
            time.sleep(0.1)
    raise PostgresUnavailable(f"server on port {port} does not accept connections: {last}")


def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE `name` in the cluster that `admin_url` points at."""
    with psycopg.connect(_conninfo(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE `name`, disconnecting whoever is still connected to it."""
    with psycopg.connect(_conninfo(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _reap_stale(base: Path, runner: _Runner) -> None:
    """Stop and delete clusters left behind by test runs that were killed.

    A killed pytest never reaches its teardown, and its server would go on
    holding a port and, on tmpfs, memory. Only clusters whose owning process
    is gone are touched.
    """
    for stale in base.glob(f"{_PREFIX}*"):
        try:
            owner = int((stale / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        if (stale / "data" / "postmaster.pid").exists():
            try:
                runner.run(
                    "pg_ctl", "stop", "--pgdata", str(stale / "data"), "--mode", "immediate",
                    "--wait", timeout=30,
                )  # fmt: skip
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(stale, ignore_errors=True)


def _conninfo(url: str) -> str:
    # postgresql://user@host:port/db is also a libpq URI, as long as no
    # SQLAlchemy driver suffix (+psycopg) is in it.
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def postgres_cluster(dbname: str = "pseudowa_test") -> Iterator[str]:
    """Start a throwaway cluster; yield `postgresql://postgres@127.0.0.1:<port>/<dbname>`.

    Raises `PostgresUnavailable` when the binaries are missing (run
    `.ci/ensure-postgres`) or the server does not come up (the message holds
    the end of its log).
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
            "/usr/lib/postgresql/*/bin; run .ci/ensure-postgres (as root) to install them"
        )
    runner = _Runner(bin_dir)
    base = _base_dir()
    _reap_stale(base, runner)
    root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    started = False
    try:
        (root / _OWNER_FILE).write_text(str(os.getpid()))
        sockets.mkdir()
        runner.give(root)
        runner.give(sockets)
        runner.run(
            "initdb",
            "--pgdata", str(data),
            "--username", SUPERUSER,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
        )  # fmt: skip
        # Retry on a new port if another process grabbed ours in between.
        for attempt in range(3):
            port = free_port()
            settings = {
                **_SERVER_SETTINGS,
                "port": str(port),
                "unix_socket_directories": f"'{sockets}'",
            }
            # Later lines win in postgresql.conf, so appending overrides initdb's.
            with (data / "postgresql.conf").open("a") as conf:
                conf.write("".join(f"{k} = {v}\n" for k, v in settings.items()))
            try:
                runner.run(
                    "pg_ctl", "start", "--pgdata", str(data), "--log", str(log),
                    "--wait", "--timeout", str(_START_TIMEOUT_S),
                )  # fmt: skip
            except PostgresUnavailable as e:
                if attempt == 2:
                    raise PostgresUnavailable(f"{e}\nserver log:\n{_log_tail(log)}") from e
                continue
            started = True
            _wait_accepting(port, time.monotonic() + _START_TIMEOUT_S)
            break
        admin_url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        create_database(admin_url, dbname)
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
    finally:
        if started:
            try:
                runner.run("pg_ctl", "stop", "--pgdata", str(data), "--mode", "immediate", "--wait")
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass  # deleting the directory below is what matters
        shutil.rmtree(root, ignore_errors=True)
