"""Settings: one frozen object, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from flask import current_app

DEFAULT_DATABASE_URL = "sqlite:///receiver.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Segment's Webhooks destination batches up to 4,000 events of at most 32 KB each.
    max_body_bytes: int = 16 * 1024 * 1024
    max_event_bytes: int = 32 * 1024
    max_batch_events: int = 10_000
    # Segment gives up on a request after 5 s: a slow store must answer 503 well before.
    db_connect_timeout_s: int = 2
    db_statement_timeout_ms: int = 3000
    db_pool_size: int = 4
    db_pool_timeout_s: float = 2.0
    retry_after_unavailable_s: int = 10
    default_plan: str = "free"
    default_signal_limit: int = 10_000
    cold_retention_days: int = 90
    # An anonymousId that has linked to more distinct emails than this stops linking.
    max_leads_per_identifier: int = 5
    # Moving a very long anonymous history onto its lead may outlast the statement timeout.
    rehydrate_timeout_ms: int = 20_000
    # Backfills: 1 runs a worker thread in each process (0: only `receiver run-backfills`),
    # at most this many at once per account, and an idle worker looks for work this often.
    backfill_worker: int = 1
    backfill_max_per_account: int = 1
    backfill_poll_s: float = 5.0
    # lead_summary.score_recent: a signal's score fades to nothing over this many days.
    score_window_days: int = 90
    # Where browsers reach this receiver (e.g. https://collect.example.com): the apiHost the
    # Analytics.js settings hand out. Empty: the host the settings were requested from.
    public_url: str = ""
    # Proxies in front of the receiver whose X-Forwarded-For hop is trusted for a client's
    # address (werkzeug's ProxyFix x_for); 0 trusts none, the connecting address is the client.
    trusted_proxy_hops: int = 0
    # Per browser key and client address, in each worker (see receiver/browser.py); a whole
    # office behind one address browsing at once stays well under it.
    browser_rate_limit: str = "1000/minute"
    # What one account's rules may cost every event it sends: checked when a rule is saved.
    max_rules_per_account: int = 100
    max_conditions_per_rule: int = 20
    # Fernet keys, comma-separated, that seal key secrets at rest (receiver/sealing.py).
    secret_key: str = ""
    log_level: str = "INFO"
    # "plain" (the default) or "json": one JSON object per line (gunicorn reads it too).
    log_format: str = "plain"
    # When set, GET /metrics needs Authorization: Bearer <token>.
    metrics_token: str = ""
    delivery_log_hours: int = 24
    delivery_log_per_account: int = 2_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Each field is read from the upper-case variable of its name, e.g. DATABASE_URL."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None or raw == "":
                continue
            kind: Any = type(field.default)
            values[field.name] = kind(raw) if kind is not str else raw
        return cls(**values)  # type: ignore[arg-type]


def current_settings() -> Settings:
    return current_app.extensions["receiver.settings"]
