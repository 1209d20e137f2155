"""A small HTTP/1.1 load generator (asyncio, keep-alive) and a gunicorn launcher.

The client speaks just enough HTTP for these benchmarks (Content-Length bodies, keep-alive,
reconnect on ``Connection: close``) so that its own cost per request stays far below the
server's; the same client drives the product and the raw Elasticsearch baseline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, successful requests only
    seconds: float
    statuses: dict[int, int]
    errors: int

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: Request) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = [f"{request.method} {request.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in request.headers.items()]
        if request.body or request.method in {"POST", "PUT", "PATCH"}:
            head.append(f"Content-Length: {len(request.body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed before the answer")
        status = int(status_line.split()[1])
        length, close, chunked = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            body = await self._chunks()
        else:
            body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    async def _chunks(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class _Tally:
    """Latencies of the answered requests, statuses and transport errors of one load run."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    async def send(self, connection: _Connection, request: Request) -> bool:
        """Send and count; False (and the connection closed) if the transport failed."""
        started = time.perf_counter()
        try:
            status, _ = await connection.send(request)
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            self.errors += 1
            connection.close()
            return False
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status < 400:
            self.latencies.append(time.perf_counter() - started)
        return True

    def result(self, seconds: float) -> LoadResult:
        return LoadResult(self.latencies, seconds, self.statuses, self.errors)


async def _closed_loop(
    host: str, port: int, make: Callable[[int], Request], concurrency: int, seconds: float
) -> LoadResult:
    tally = _Tally()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        connection = _Connection(host, port)
        while time.perf_counter() < deadline:
            await tally.send(connection, make(next(counter)))
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return tally.result(time.perf_counter() - started)


def closed_loop(
    url: str, make: Callable[[int], Request], *, concurrency: int, seconds: float
) -> LoadResult:
    """``concurrency`` connections, each sending its next request as soon as one is answered."""
    host, port = _host_port(url)
    return asyncio.run(_closed_loop(host, port, make, concurrency, seconds))


async def _open_loop(
    host: str,
    port: int,
    make: Callable[[int], Request],
    per_second: float,
    seconds: float,
    max_connections: int,
) -> LoadResult:
    tally = _Tally()
    idle: list[_Connection] = []
    slots = asyncio.Semaphore(max_connections)

    async def one(index: int) -> None:
        async with slots:
            connection = idle.pop() if idle else _Connection(host, port)
            if await tally.send(connection, make(index)):
                idle.append(connection)

    started = time.perf_counter()
    tasks = []
    total = int(per_second * seconds)
    for index in range(total):
        due = started + index / per_second
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return tally.result(time.perf_counter() - started)


def open_loop(
    url: str,
    make: Callable[[int], Request],
    *,
    per_second: float,
    seconds: float,
    max_connections: int = 64,
) -> LoadResult:
    """Requests started at a steady rate, whatever the answers' latency (no coordinated omission
    below ``max_connections`` in flight)."""
    host, port = _host_port(url)
    return asyncio.run(_open_loop(host, port, make, per_second, seconds, max_connections))


def _host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.partition(":")
    return host, int(port or 80)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Gunicorn:
    """``gunicorn wsgi:app`` on a free local port, with the given environment, until closed."""

    def __init__(self, env: Mapping[str, str], *, workers: int, threads: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(  # noqa: S603  (our own command line)
            command,
            cwd=ROOT,
            env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                with urlopen(f"{self.url}/healthz", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("gunicorn did not answer /healthz within 60 s")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Gunicorn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
