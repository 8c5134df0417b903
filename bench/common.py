"""What every benchmark shares: a private schema, processes, tokens, figures.

Run a benchmark as `python bench/<name>.py` from the repository root; this
module sits beside it on sys.path. Each run gets its own database schema,
Redis namespace and export directory, and removes them at the end (unless
--keep), together with every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg import sql

from application.bootstrap import initialise_database
from application.settings import PostgresParams, Settings
from application.tokens import issue_token

REPO = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billing"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the run's private environment ------------------------------------------------


@dataclass
class Bench:
    """One run's settings, the environment for its processes, and its temp dir."""

    settings: Settings
    env: dict[str, str]
    tmp: Path
    processes: list[Service] = field(default_factory=list)
    logs: int = 0

    def log_path(self, kind: str) -> Path:
        """A new log file for a process of this run."""
        self.logs += 1
        return self.tmp / f"{self.logs:02d}-{kind}.log"


def base_arguments(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the schema, keys and files"
    )
    return parser


@contextmanager
def private_environment(name: str, *, keep: bool = False) -> Iterator[Bench]:
    """A fresh schema, Redis namespace and export dir, removed afterwards."""
    schema = f"bench_{name}_{secrets.token_hex(4)}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{schema}-"))
    settings = Settings(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        db_schema=schema,
        redis_namespace=schema,
        jwt_secret=secrets.token_urlsafe(32),
        export_dir=tmp / "exports",
        projection_tick_seconds=1.0,
    )
    bench = Bench(settings, service_env(settings), tmp)
    try:
        initialise_database(settings)
        yield bench
    except BaseException:
        _print_logs(tmp)
        raise
    finally:
        for process in reversed(bench.processes):
            process.stop()
        if keep:
            print(f"kept       schema {schema}, redis namespace {schema}, files {tmp}")
        else:
            _remove(settings, tmp)


def _print_logs(tmp: Path) -> None:
    """The end of every process log, to explain a failed run."""
    for log in sorted(tmp.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print(f"--- {log.name}", *tail, sep="\n", file=sys.stderr)


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points `billing` processes at this run's schema."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        BILLING_DB_SCHEMA=settings.db_schema,
        BILLING_REDIS_NAMESPACE=settings.redis_namespace,
        BILLING_JWT_SECRET=settings.jwt_secret,
        BILLING_EXPORT_DIR=str(settings.export_dir),
        BILLING_PROJECTION_TICK_SECONDS=str(settings.projection_tick_seconds),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _remove(settings: Settings, tmp: Path) -> None:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(settings.db_schema)
            )
        )
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{settings.redis_namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    shutil.rmtree(tmp, ignore_errors=True)


def analyze(settings: Settings) -> str:
    """ANALYZE every table of the schema; say whether autovacuum would have."""
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s",
            (settings.db_schema,),
        ).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        row = conn.execute("SHOW autovacuum").fetchone()
    return f"ANALYZE after loading (autovacuum is {row[0] if row else '?'} here)"


def token(settings: Settings, tenant: str, *roles: str) -> str:
    """A bearer token for `tenant`, valid for the whole run."""
    return issue_token(
        settings,
        tenant_id=tenant,
        roles=list(roles),
        subject="bench",
        ttl_seconds=86400,
    )


# --- processes --------------------------------------------------------------------


class Service:
    """A subprocess in its own session, its output kept in a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *args],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 90) -> None:
        """Block until `text` appears `count` times in the log (fail if it dies)."""
        deadline = time.monotonic() + timeout
        while self.log.read_text(errors="replace").count(text) < count:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{text!r} not logged in {timeout} s:\n{self.tail()}"
                )
            time.sleep(0.1)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"process exited ({self.proc.returncode}):\n{self.tail()}"
            )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM and wait; then SIGKILL whatever of its process group is left."""
        family = process_tree(self.proc.pid)[1:]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == self.proc.pid:
                    os.kill(pid, signal.SIGKILL)


@dataclass
class Server:
    """A running `billing serve`."""

    service: Service
    url: str
    port: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    bench: Bench, *, workers: int, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """`billing serve --workers N`, ready (every worker started, /readyz 200)."""
    port = free_port()
    args = ["-m", "interfaces.cli", "serve", "--port", str(port)]
    args += ["--workers", str(workers)]
    service = Service(args, env or bench.env, bench.log_path("serve"))
    bench.processes.append(service)
    try:
        service.wait_for_log("Application startup complete", count=workers)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(service, f"{url}/readyz")
        yield Server(service, url, port)
    finally:
        service.stop()
        bench.processes.remove(service)


@contextmanager
def uncached_server(bench: Bench, *, workers: int = 1) -> Iterator[Server]:
    """`billing serve` whose Redis keeps nothing and whose in-process cache is off."""
    port = free_port()
    null = Service(
        ["bench/null_redis.py", str(port)], bench.env, bench.log_path("null-redis")
    )
    bench.processes.append(null)
    try:
        null.wait_for_log("listening")
        env = service_env(
            bench.settings,
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            BILLING_LOCAL_CACHE_BYTES="0",
        )
        with running_server(bench, workers=workers, env=env) as server:
            yield server
    finally:
        null.stop()
        bench.processes.remove(null)


@contextmanager
def running_worker(
    bench: Bench, *, processes: int = 1, threads: int = 2
) -> Iterator[Service]:
    """`billing worker`, its projection daemons started."""
    args = ["-m", "interfaces.cli", "worker", "--processes", str(processes)]
    args += ["--threads", str(threads)]
    service = Service(args, bench.env, bench.log_path("worker"))
    bench.processes.append(service)
    try:
        service.wait_for_log("is ready for action", count=processes)
        yield service
    finally:
        service.stop()
        bench.processes.remove(service)


def _wait_ready(service: Service, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check_alive()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout} s:\n{service.tail()}")


# --- figures ----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_text(seconds: Sequence[float], ps: Sequence[float] = (50, 95, 99)) -> str:
    """'p50 1.20 ms  p95 ...  (n=...)' of latencies given in seconds."""
    parts = [f"p{p:g} {percentile(seconds, p) * 1000:.2f} ms" for p in ps]
    return "  ".join(parts) + f"  (n={len(seconds):,})"


def ratio_text(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.3f}" if denominator else "n/a"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


class Report:
    """Prints the figures of a run in one aligned, greppable format."""

    def __init__(self, title: str) -> None:
        print(f"== {title} ==")
        self.line("command", shlex.join(sys.orig_argv))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.line("machine", f"{os.cpu_count()} CPUs, load average {load} at start")

    def line(self, kind: str, text: str) -> None:
        print(f"{kind:<10} {text}", flush=True)

    def setup(self, text: str) -> None:
        self.line("setup", text)

    def figure(self, label: str, value: str, target: str = "") -> None:
        self.line(
            "figure",
            f"{label:<46} {value}" + (f"   [target {target}]" if target else ""),
        )

    def reference(self, label: str, value: str) -> None:
        self.line("reference", f"{label:<46} {value}")

    def ratio(self, label: str, value: str) -> None:
        self.line("ratio", f"{label:<46} {value}")

    def note(self, text: str) -> None:
        self.line("note", text)


def progress(text: str) -> None:
    """Progress goes to stderr, so stdout holds only the figures."""
    print(f"... {text}", file=sys.stderr, flush=True)


# --- resource use -----------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError):
        return 0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the given processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


class ResourceMonitor:
    """Samples the summed RSS of process trees (keeps the peak) and CPU use."""

    def __init__(self, *roots: int, interval: float = 0.1) -> None:
        self.roots = roots
        self.interval = interval
        self.peak_rss = self.first_rss = self.peak_connections = 0
        self.wall = self.client_cpu = self.server_cpu = self.other_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pids = self._scan()

    def __enter__(self) -> ResourceMonitor:
        self.first_rss = self.peak_rss = sum(map(rss_bytes, self._pids))
        self.peak_connections = postgres_connections(self._pids)
        self._start = (time.monotonic(), machine_cpu()[0], own_cpu(), self._tree_cpu())
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        connections = postgres_connections(self._pids)
        self.peak_connections = max(self.peak_connections, connections)
        started, busy, own, tree = self._start
        self.wall = time.monotonic() - started
        self.client_cpu = own_cpu() - own
        self.server_cpu = self._tree_cpu() - tree
        busy = machine_cpu()[0] - busy
        self.other_cpu = max(0.0, busy - self.client_cpu - self.server_cpu)

    def _scan(self) -> list[int]:
        return [pid for root in self.roots for pid in process_tree(root)]

    def _run(self) -> None:
        scanned = time.monotonic()
        while not self._stop.wait(self.interval):
            if time.monotonic() - scanned > 2:  # a /proc scan costs; RSS reads don't
                self._pids, scanned = self._scan(), time.monotonic()
                connections = postgres_connections(self._pids)
                self.peak_connections = max(self.peak_connections, connections)
            self.peak_rss = max(self.peak_rss, sum(map(rss_bytes, self._pids)))

    def _tree_cpu(self) -> float:
        self._pids = self._scan()
        return cpu_seconds(self._pids)

    def cpu_text(self) -> str:
        """How the machine's CPU time was shared during the run."""
        available = (os.cpu_count() or 1) * self.wall
        shares = [
            ("client", self.client_cpu),
            ("service", self.server_cpu),
            ("other (PostgreSQL, rest of machine)", self.other_cpu),
        ]
        text = ", ".join(
            f"{name} {s:.1f} s ({s / available:.0%})" for name, s in shares
        )
        return f"{text} of {available:.1f} CPU-s"


def postgres_connections(pids: Sequence[int]) -> int:
    """How many TCP connections to PostgreSQL's port the processes hold."""
    port = f":{PostgresParams.from_url(DATABASE_URL).port:04X}"
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(port) and fields[3] == "01":  # established
                sockets.add(f"socket:[{fields[9]}]")
    count = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            count += sum(
                os.readlink(fd) in sockets for fd in Path(f"/proc/{pid}/fd").iterdir()
            )
    return count


def own_cpu() -> float:
    """CPU time of this process (all its threads) so far."""
    times = os.times()
    return times.user + times.system
