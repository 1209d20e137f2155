"""The command line as a person meets it: log format, quiet output, and the embedded Redis
that stops with the process that started it (however that process ends)."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from market.logs import JsonFormatter, TextFormatter, log_format
from tests.faults.toolkit import free_port
from tests.timing import scaled

REPO = Path(__file__).resolve().parent.parent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("wanted", "profile", "terminal", "chosen"),
    [
        ("auto", "production", False, "json"),  # a supervisor collects the lines
        ("auto", "production", True, "text"),  # an operator at a terminal
        ("auto", "embedded", False, "text"),
        ("auto", "embedded", True, "text"),
        ("json", "embedded", True, "json"),  # asked for
        ("text", "production", False, "text"),
    ],
)
def test_logs_are_text_for_people_and_json_for_machines(wanted, profile, terminal, chosen):
    stream = Terminal() if terminal else io.StringIO()
    assert log_format(wanted, profile, stream) == chosen


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of"):
        log_format("xml", "production", io.StringIO())


def test_text_lines_cannot_be_forged_by_user_text():
    record = logging.LogRecord("market.x", logging.WARNING, "", 0, "login failed", None, None)
    record.email = "a@b.test\n12:00:00 INFO market.auth: admin signed in"
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert line.endswith('email="a@b.test\\n12:00:00 INFO market.auth: admin signed in"')
    assert " WARNING market.x: login failed " in line
    assert JsonFormatter().format(record).startswith("{")


def embedded_env(tmp_path: Path) -> dict[str, str]:
    """The zero-configuration embedded profile in its own instance folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "ELASTICSEARCH_URL", "MARKET_ENV", "LOG_FORMAT"}
        and k not in {"LC_ALL", "LC_MESSAGES"}  # English prose (CLI output follows LANG)
    }
    return env | {
        "MARKET_INSTANCE_DIR": str(tmp_path / "instance"),
        "PYTHONPATH": str(REPO),
        "LANG": "C.UTF-8",
    }


def redis_children(pid: int) -> list[int]:
    found = subprocess.run(
        ["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True
    )
    return [int(line.split()[0]) for line in found.stdout.splitlines() if "redis" in line]


def servers_working_in(folder: Path) -> list[int]:
    """redis-server processes whose working directory is in ``folder`` (``--dir``), whoever
    their parent is now (a daemonised or orphaned one has init's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if "redis-server" not in (entry / "comm").read_text():
                continue
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)) and not gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + scaled(seconds)
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {scaled(seconds):g} s waiting for {what}")


STARTS_APP = (
    "import sys, time\n"
    "from market import create_app\n"
    "app = create_app()\n"
    "print('ready', flush=True)\n"
    "if sys.argv[1] == 'wait':\n"
    "    time.sleep(600)\n"
)


@pytest.mark.parametrize("ending", ["normal exit", "SIGTERM", "SIGKILL"])
def test_the_embedded_redis_stops_with_the_process_that_started_it(tmp_path, ending):
    mode = "exit" if ending == "normal exit" else "wait"
    process = subprocess.Popen(
        [sys.executable, "-c", STARTS_APP, mode],
        cwd=tmp_path,
        env=embedded_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        servers = redis_children(process.pid)
        if mode == "wait":
            assert len(servers) == 1, "the embedded profile starts one redis-server"
            process.send_signal(signal.SIGTERM if ending == "SIGTERM" else signal.SIGKILL)
        process.wait(timeout=scaled(30))
        wait_until(
            lambda: not servers_working_in(tmp_path) and all(map(gone, servers)),
            10,
            f"the embedded redis-server to stop after a {ending}",
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_flask_run_leaves_no_redis_server_behind(tmp_path):
    port = free_port()
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", str(port)],
        cwd=REPO,
        env=embedded_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: redis_children(process.pid), 60, "flask run to start its redis")
        [server] = redis_children(process.pid)
        wait_until(
            lambda: "Running on" in (tmp_path / "run.log").read_text(), 60, "flask run to listen"
        )
        process.send_signal(signal.SIGTERM)  # what a supervisor or `kill` sends
        process.wait(timeout=scaled(30))
        wait_until(lambda: gone(server), 10, "the redis-server of flask run to stop")
        # Logs on stderr are text lines for a person, not JSON.
        lines = (tmp_path / "run.log").read_text().splitlines()
        assert not [line for line in lines if line.startswith("{")]
    finally:
        log.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_seed_demo_output_is_the_summary_only(tmp_path):
    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=REPO,
            env=embedded_env(tmp_path) | {"LOG_LEVEL": "INFO"},
            capture_output=True,
            text=True,
            timeout=scaled(120),
            check=False,
        )

    assert flask("db", "upgrade").returncode == 0
    result = flask("seed-demo", "--size", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Seeded a demo world in ")
    assert "reindex" not in result.stdout and "Suppliers" not in lines
    assert not [line for line in lines if line.startswith("{") or " INFO " in line]
    # Its logs went to stderr, as text (not a terminal, but not production either).
    assert not [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert not servers_working_in(tmp_path)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh_CN.UTF-8", "已关闭 0 个过期需求"),
        ("en_US.UTF-8", "Closed 0 expired demand(s)"),
        ("C.UTF-8", "Closed 0 expired demand(s)"),
    ],
)
def test_cli_prose_follows_the_terminal_language(app, db_session, locale, expected):
    result = app.test_cli_runner().invoke(
        args=["demands", "close-expired"],
        env={"LC_ALL": None, "LC_MESSAGES": None, "LANG": locale},
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(expected)
