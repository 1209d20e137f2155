"""Structured JSON logs in UTC, each line carrying the request id (or the job id)."""

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


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
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
