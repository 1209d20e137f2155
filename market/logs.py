"""Logs on stderr in UTC, each line carrying the request id (or the job id).

Two formats: JSON lines for machines (a server's or worker's output collected by a supervisor)
and short text lines for a person at a terminal. ``LOG_FORMAT`` chooses (``json`` or
``text``); by default (``auto``) logs are JSON in production when stderr is not a terminal,
and text otherwise. Command output (``click.echo``) goes to stdout, logs never do.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context, request
from flask.wrappers import Response

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

# Outside a request (a job, a CLI command) this names the unit of work on every line.
_context: dict[str, str] = {}


def set_log_context(**values: str) -> None:
    _context.clear()
    _context.update(values)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context():
            entry["request_id"] = g.get("request_id")
        entry.update(_context)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # json.dumps escapes CR/LF, so user text can never forge a log line.
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01 WARNING market.x: message key=value`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        fields: dict[str, Any] = {}
        if has_request_context():
            fields["request_id"] = g.get("request_id")
        fields.update(_context)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                fields[key] = value
        extras = "".join(f" {key}={_one_line(value)}" for key, value in fields.items())
        line = f"{when} {record.levelname} {record.name}: {_one_line(record.getMessage())}{extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _one_line(value: Any) -> str:
    # Colours (werkzeug's banner) are dropped; any other control character is escaped the way
    # JSON would: user text can never forge a log line or drive the terminal.
    text = _COLOURS.sub("", str(value))
    return json.dumps(text, ensure_ascii=False) if _CONTROLS.search(text) else text


_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
LOG_FORMATS = ("auto", "json", "text")


def log_format(wanted: str, profile: str, stream: Any) -> str:
    """``json`` or ``text`` for ``LOG_FORMAT=wanted`` in ``profile`` writing to ``stream``."""
    if wanted not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {wanted!r}")
    if wanted in {"json", "text"}:
        return wanted
    is_terminal = bool(getattr(stream, "isatty", lambda: False)())
    return "json" if profile == "production" and not is_terminal else "text"


def configure_logging(level: str, fmt: str = "auto", profile: str = "production") -> None:
    """One stderr handler on the root logger, in the format ``log_format`` picks."""
    root = logging.getLogger()
    chosen = log_format(fmt, profile, sys.stderr)
    formatter: logging.Formatter = JsonFormatter() if chosen == "json" else TextFormatter()
    ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter | TextFormatter)]
    if ours:
        for handler in ours:
            handler.setFormatter(formatter)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)


def init_request_logging(app: Flask) -> None:
    access = logging.getLogger("market.access")

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def log_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        access.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
            },
        )
        return response
