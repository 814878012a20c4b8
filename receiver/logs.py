"""Logging that never writes a credential in full, whoever emits the line."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from receiver.credentials import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, RedactCredentials) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactCredentials())
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
