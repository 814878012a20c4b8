"""Slow clients and sync workers: gunicorn alone is held by them, behind the nginx of
deploy/nginx-receiver.conf it is not."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import POSTGRES_REQUIRED, REPO_ROOT
from tests.e2e.conftest import free_port, start_gunicorn, stop

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
TRICKLE_BYTES, TRICKLE_INTERVAL_S = 12, 0.5  # six seconds a body


@pytest.fixture
def gunicorn(postgres_url, tmp_path):
    server = start_gunicorn(postgres_url, tmp_path / "gunicorn.log", workers=2)
    yield server
    stop(server)


@pytest.fixture
def nginx(gunicorn, tmp_path) -> Iterator[str]:
    if NGINX is None:
        message = "nginx is not installed (.ci/run installs it)"
        if POSTGRES_REQUIRED:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    port = free_port()
    site = (REPO_ROOT / "deploy" / "nginx-receiver.conf").read_text()
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{gunicorn.port};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    site = "\n".join(line for line in site.splitlines() if "ssl_certificate" not in line)
    (tmp_path / "receiver.conf").write_text(site)
    temp = "\n".join(
        f"{kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"""{"user root;" if os.geteuid() == 0 else ""}
        daemon off;
        pid {tmp_path / "nginx.pid"};
        error_log {tmp_path / "nginx.log"};
        events {{}}
        http {{
            access_log off;
            {temp}
            include {tmp_path / "receiver.conf"};
        }}"""
    )
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_up(url, process):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "nginx exited"
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError("nginx did not start")


def trickle(port: int, started: threading.Event) -> None:
    """A webhook request whose body comes a byte at a time."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /webhook/rk_1_trickletrickletrickle HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {TRICKLE_BYTES}\r\n\r\n".encode()
        )
        started.set()
        for byte in b" " * (TRICKLE_BYTES - 2) + b"{}":
            time.sleep(TRICKLE_INTERVAL_S)
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return


def healthz_seconds_while_trickling(url: str, port: int, clients: int) -> float:
    threads, started = [], []
    for _ in range(clients):
        event = threading.Event()
        thread = threading.Thread(target=trickle, args=(port, event), daemon=True)
        thread.start()
        threads.append(thread)
        started.append(event)
    for event in started:
        event.wait(5)
    time.sleep(1)  # let the server take the connections in
    begun = time.monotonic()
    try:
        requests.get(f"{url}/healthz", timeout=4).raise_for_status()
        elapsed = time.monotonic() - begun
    except requests.Timeout:
        elapsed = float("inf")
    for thread in threads:
        thread.join(15)
    return elapsed


def test_slow_clients_hold_gunicorns_sync_workers_without_the_proxy(gunicorn):
    # What the proxy is for: two trickling bodies hold both workers of a bare gunicorn.
    assert healthz_seconds_while_trickling(gunicorn.url, gunicorn.port, clients=2) > 2


def test_behind_the_buffering_proxy_slow_clients_hold_no_worker(nginx):
    port = int(nginx.rsplit(":", 1)[1])
    assert healthz_seconds_while_trickling(nginx, port, clients=8) < 1
