"""End to end: gunicorn in a subprocess on Postgres, accounts made by the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "receiver"), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "DATABASE_URL": database_url},
    )


def create_account(database_url: str, *args: str) -> dict[str, str]:
    return json.loads(cli(database_url, "create-account", "e2e", *args).stdout)


@dataclass
class Server:
    url: str
    port: int
    database_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gunicorn(database_url: str, log_path: Path, workers: int = 4, **env: str) -> Server:
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "wsgi:app"],
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "WEB_CONCURRENCY": str(workers),
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                **env,
            },
        )
    server = Server(f"http://127.0.0.1:{port}", port, database_url, log_path, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=2).ok:
                return server
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"gunicorn did not start:\n{server.log()}")


def stop(server: Server) -> None:
    server.process.send_signal(signal.SIGINT)  # quick shutdown: the tests are done with it
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # More workers than cores: more requests in flight at once, so races show more often.
    running = start_gunicorn(
        postgres_url, tmp_path_factory.mktemp("gunicorn") / "server.log", workers=8
    )
    yield running
    stop(running)


def query(database_url: str, sql: str, **params: object) -> list[sa.RowMapping]:
    """Rows of one SQL query, on a connection of its own."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params).mappings().all())
    finally:
        engine.dispose()


def count_signals(database_url: str, account_id: int | str) -> int:
    rows = query(
        database_url, "SELECT count(*) AS n FROM signals WHERE account_id = :a", a=account_id
    )
    return int(rows[0]["n"])


def http_request(
    method: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def send_all_at_once(
    port: int, requests_: list[bytes], timeout: float = 60
) -> list[tuple[int, dict]]:
    """Open every connection and write every request before reading any answer, so that the
    server really has them all at once; then read the (status, JSON body) of each."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=timeout) for _ in requests_]
    try:
        for sock, raw in zip(sockets, requests_, strict=True):
            sock.sendall(raw)
        # Close each connection once read, as a client would: gunicorn lingers until it closes.
        return [_read_response(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}
