"""The Flask application factory."""

from __future__ import annotations

from flask import Flask

from receiver import cli, db, errors, logs
from receiver.api import health, webhook
from receiver.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["receiver.settings"] = settings
    db.init_app(app, settings)
    errors.init_app(app, settings.retry_after_unavailable_s)
    app.register_blueprint(health.bp)
    app.register_blueprint(webhook.bp)
    cli.init_app(app)
    return app
