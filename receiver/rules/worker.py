"""The backfill worker: one thread per process that runs the account's backfills
(receiver/rules/backfill.py), on a small connection pool of its own.

One thread per process, not one per rule: thirty rules created at once used to start thirty
threads, each holding a connection of the request pool while it waited for the account's
lock, so that requests of every account waited for a connection and answered 503. Now a rule
change only wakes the worker; requests never share their pool with it; and a worker that
finds nothing to do sleeps until woken or for `BACKFILL_POLL_S`, so that a backfill left by a
crashed process is taken up without any request.
"""

from __future__ import annotations

import logging
import threading
import weakref

from flask import Flask

from receiver import db
from receiver.config import Settings
from receiver.identity.resolve import identity_policy
from receiver.rules import backfill

log = logging.getLogger(__name__)
EXTENSION = "receiver.backfill_worker"
# The worker's own pool: one connection for its transactions, one spare.
POOL_SIZE = 1


class BackfillWorker:
    def __init__(self, settings: Settings) -> None:
        self.engine = db.make_engine(settings, pool_size=POOL_SIZE)
        self.policy = identity_policy(settings)
        self.max_per_account = settings.backfill_max_per_account
        self.poll_s = settings.backfill_poll_s
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backfill-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Stop after the current chunk; a job it was running is handed back as pending."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.engine.dispose()

    def run_forever(self) -> None:
        """The worker's loop in the calling thread (`receiver run-backfills --watch`)."""
        self._loop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the work: a wake during it runs it once more
            try:
                backfill.run_pending(self.engine, self.policy, self.max_per_account, self._stop)
            except Exception:  # the store is away, say: try again at the next poll
                log.exception("backfill worker: claiming failed; retried in %ss", self.poll_s)
            self._wake.wait(self.poll_s)


_guard = threading.Lock()
_workers: weakref.WeakSet[BackfillWorker] = weakref.WeakSet()


def start_for(app: Flask) -> BackfillWorker | None:
    """The app's worker, started on first use; None when BACKFILL_WORKER=0, or for an app
    that is not the receiver (gunicorn.conf.py serves the benchmark's floor app too)."""
    extensions = getattr(app, "extensions", {})
    settings: Settings | None = extensions.get("receiver.settings")
    if settings is None:
        return None
    with _guard:
        worker: BackfillWorker | None = extensions.get(EXTENSION)
        if worker is None and settings.backfill_worker:
            worker = extensions[EXTENSION] = BackfillWorker(settings)
            _workers.add(worker)
            worker.start()
        return worker


def wake(app: Flask) -> None:
    """A rule changed: have the worker look for work now rather than at its next poll."""
    worker = start_for(app)
    if worker is not None:
        worker.wake()


def stop_all(timeout: float) -> None:
    """Stop this process's workers (before their apps' engines are disposed)."""
    for worker in list(_workers):
        worker.stop(timeout)
        _workers.discard(worker)
