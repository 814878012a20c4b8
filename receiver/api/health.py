"""Probes for load balancers: the process is up; the store answers."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify

from receiver.db import engine_of

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    with engine_of(current_app).connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    return jsonify({"status": "ready"})
