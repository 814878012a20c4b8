"""Logging that never writes a credential in full, whoever emits the line: the application's
lines and gunicorn's, plain (the default) or one JSON object per line (`LOG_FORMAT=json`);
request logs (gunicorn's and the development server's) without query strings.

Every line carries the id of the request it was written for (receiver/request_id.py). A plain
line has its control characters escaped once redacted: a path is written decoded (by gunicorn,
and by the redaction of a percent-encoded key), so `%0A` in a path would otherwise start a
forged line of its own. A JSON line needs no such care: its encoder escapes them.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger
from pythonjsonlogger.json import JsonFormatter
from werkzeug.serving import WSGIRequestHandler

from receiver import request_id
from receiver.credentials import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
PLAIN, JSON = "plain", "json"
# C0 controls, DEL and C1 controls; also the line and paragraph separators some viewers break on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# ANSI colour codes (SGR), which a terminal reads as colour and nothing else.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL_BUT_COLOUR = re.compile(f"({_COLOUR.pattern})|{_CONTROL.pattern}")


def escape_controls(text: str, keep_colour: bool = False) -> str:
    """Control characters written as escapes; keep_colour leaves colour codes (for a terminal)."""
    if keep_colour:
        return _CONTROL_BUT_COLOUR.sub(lambda m: m.group(1) or _escaped(m.group()), text)
    return _CONTROL.sub(lambda m: _escaped(m.group()), text)


def _escaped(control: str) -> str:
    return control.encode("unicode_escape").decode("ascii")


class RedactCredentials(logging.Filter):
    """Redacts the message (and, in plain lines, escapes its control characters); adds the
    request id to the record."""

    def __init__(self, escape: bool = True, keep_colour: bool = False) -> None:
        super().__init__()
        self.escape = escape
        self.keep_colour = keep_colour

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if self.escape:
            cleaned = escape_controls(cleaned, self.keep_colour)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if not hasattr(record, "request_id"):
            record.request_id = request_id.current() or "-"
        return True


class NoColour(logging.Filter):
    """The development server colours its lines with ANSI codes, which only a terminal reads:
    a log file or a pipe gets them without (this filter runs before RedactCredentials, whose
    escaping would write them as text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b[" in message:
            record.msg, record.args = _COLOUR.sub("", message), None
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level"},
        timestamp="time",
    )


def checked_format(log_format: str) -> str:
    """The LOG_FORMAT setting, or a start that fails saying why (never a silent plain)."""
    if log_format.lower() not in (PLAIN, JSON):
        raise ValueError(f"LOG_FORMAT must be {PLAIN} or {JSON}, not {log_format!r}")
    return log_format.lower()


def formatter_for(log_format: str) -> logging.Formatter:
    return json_formatter() if log_format == JSON else logging.Formatter(FORMAT)


def configure(level: str, log_format: str = PLAIN) -> None:
    log_format = checked_format(log_format)
    root = logging.getLogger()
    if not any(isinstance(f, RedactCredentials) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(formatter_for(log_format))
        on_terminal = handler.stream.isatty()
        if not on_terminal:
            handler.addFilter(NoColour())
        handler.addFilter(RedactCredentials(escape=log_format != JSON, keep_colour=on_terminal))
        root.addHandler(handler)
    root.setLevel(level)
    # init-db prints its own line per step.
    logging.getLogger("alembic").setLevel(logging.WARNING)


class RedactingGunicornLogger(GunicornLogger):
    """Gunicorn's access log prints the path and the Basic-auth user, both of which hold the
    API key: every handler of its logs redacts. With LOG_FORMAT=json its lines are JSON too,
    an access line with the request's fields (the Basic-auth user and the query string are
    left out: they hold keys and emails)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.log_format = checked_format(os.environ.get("LOG_FORMAT") or PLAIN)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactCredentials(escape=self.log_format != JSON))
                if self.log_format == JSON:
                    handler.setFormatter(json_formatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if self.log_format != JSON:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        method, path = environ.get("REQUEST_METHOD", "-"), redact(environ.get("PATH_INFO", ""))
        fields = {
            "method": method,
            "path": path,
            "status": int(status),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "request_id": _response_header(resp, "x-request-id") or "-",
            "remote_addr": environ.get("REMOTE_ADDR", "-"),
            "bytes": getattr(resp, "sent", None),
            "user_agent": redact(environ.get("HTTP_USER_AGENT", "-")),
        }
        self.access_log.info("%s %s %s", method, path, status, extra=fields)


def _response_header(resp: Any, name: str) -> str | None:
    for key, value in resp.headers:
        if key.lower() == name:
            return value
    return None


class DevRequestHandler(WSGIRequestHandler):
    """The development server's request log, cut as gunicorn's (gunicorn.conf.py's
    access_log_format writes %(U)s): the path without its query string, which may hold an
    email (`/admin/leads?email=`)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", None)  # not set when the request line was bad
        line = self.requestline
        if path is not None:
            line = f"{self.command} {path.partition('?')[0]} {self.request_version}"
        self.log("info", '"%s" %s %s', line.translate(self._control_char_table), code, size)
