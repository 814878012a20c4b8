"""Logging that never writes a credential in full, whoever emits the line; request logs
(gunicorn's and the development server's) without query strings."""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger
from werkzeug.serving import WSGIRequestHandler

from receiver.credentials import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class NoColour(logging.Filter):
    """The development server colours its lines with ANSI codes, which only a terminal reads:
    a log file or a pipe gets them without."""

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b[" in message:
            record.msg, record.args = self._ANSI.sub("", message), None
        return True


def configure(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, RedactCredentials) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactCredentials())
        if not handler.stream.isatty():
            handler.addFilter(NoColour())
        root.addHandler(handler)
    root.setLevel(level)
    # init-db prints its own line per step.
    logging.getLogger("alembic").setLevel(logging.WARNING)


class RedactingGunicornLogger(GunicornLogger):
    """Gunicorn's access log prints the path and the Basic-auth user, both of which hold the
    API key: every handler of its logs redacts."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactCredentials())


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
