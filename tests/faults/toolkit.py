"""Real means of injecting faults: a TCP proxy in front of a service, and private servers.

The proxy sits between the code under test and a real service on 127.0.0.1 and can add latency,
cut every connection (and refuse new ones), or accept connections and never answer. Private
servers (a Redis, a PostgreSQL cluster of the test's own) can be killed, restarted and flushed
without disturbing the shared services other tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.timing import scaled


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> float:
    """Poll ``condition`` until truthy; return the seconds it took, or fail at the deadline
    (``timeout`` scaled by the run's time factor, ``tests.timing``).

    ``what`` names the wait in the failure message; a callable is called then (for logs as
    they are at the deadline, not at the start).
    """
    started = time.monotonic()
    deadline = started + scaled(timeout)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.monotonic() - started
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    described = what() if callable(what) else what
    raise AssertionError(
        f"timed out after {scaled(timeout):g}s waiting for {described or condition}: {last_error}"
    )


def eventually(
    produce: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> Any:
    """Poll ``produce`` until it returns something truthy; return that, or fail at the deadline."""
    found: list[Any] = []

    def check() -> bool:
        value = produce()
        if value:
            found.append(value)
        return bool(value)

    wait_until(check, timeout=timeout, interval=interval, what=what)
    return found[-1]


class FaultProxy:
    """A TCP proxy on 127.0.0.1 with switchable faults, run on an asyncio loop in a thread."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.delay = 0.0  # seconds added before forwarding each chunk
        self.mode = "pass"  # pass | cut | blackhole
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start_server(), self._loop).result(timeout=scaled(5))
        return self

    def stop(self) -> None:
        self.mode = "cut"  # ends blackholed pipes too

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            # Let the connection handlers end here (their sockets are gone), not be destroyed
            # pending with the loop.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=scaled(5))

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=scaled(5))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=scaled(5))

    # -- faults ------------------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        self.delay = seconds

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`heal`."""
        self.mode = "cut"
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(timeout=scaled(5))

    def blackhole(self) -> None:
        """Accept connections but never forward a byte (a hung service)."""
        self.mode = "blackhole"

    def heal(self) -> None:
        self.mode = "pass"
        self.delay = 0.0

    # -- internals ---------------------------------------------------------------------------

    async def _start_server(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                while self.mode == "blackhole":
                    await asyncio.sleep(0.05)
                if self.mode == "cut":
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self._writers.discard(writer)


@contextlib.contextmanager
def fault_proxy(upstream_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


POSTGRES_BIN = Path(os.environ.get("FAULTS_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb into a temporary folder, a free port),
    so it can be crashed and restarted without touching the shared cluster.

    Run as the ``postgres`` OS user when the tests run as root (PostgreSQL refuses root).
    ``fsync`` is off to keep initdb and checkpoints fast: the faults here crash PostgreSQL's
    processes, not the machine, so what was written to the kernel survives as in production.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0

    @staticmethod
    def available() -> bool:
        return (POSTGRES_BIN / "initdb").exists() and (
            os.geteuid() != 0 or shutil.which("runuser") is not None
        )

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(POSTGRES_BIN / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, check=check, timeout=scaled(120)
        )

    def init(self) -> PrivatePostgres:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nfull_page_writes = off\nmax_connections = 50\n"
            )
        return self

    def start(self, timeout: float = 30) -> None:
        """Start the postmaster; retried while the old one's backends still hold its memory."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            result = self._run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "30",
                "start",
                check=False,
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill_postmaster(self) -> None:
        """SIGKILL the postmaster, as the OOM killer would; its backends notice and exit."""
        os.kill(self.postmaster_pid(), signal.SIGKILL)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis server of the test's own (Debian's redis-server) that may be killed at will."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        binary = "/usr/bin/redis-server"
        self.binary = binary if os.path.exists(binary) else (shutil.which("redis-server") or binary)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, timeout=10, what=f"private redis on {self.port}")
        return self

    def ping(self) -> bool:
        from redis import Redis

        return bool(Redis(port=self.port, socket_connect_timeout=0.5).ping())

    def kill(self) -> None:
        """SIGKILL: everything in memory is lost, as after a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=scaled(10))

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
