"""Progress of long CLI jobs: a bar on a terminal, plain lines (one per step) otherwise, so
that a job's output read by a log collector or a script stays a line per step."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

from tqdm import tqdm


class Progress(Protocol):
    def advance(self, done: int, line: str) -> None:
        """done more units finished; line says so in words (what a non-terminal gets)."""

    def __enter__(self) -> Progress: ...

    def __exit__(self, *exc: object) -> None: ...


class PlainLines:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    def advance(self, done: int, line: str) -> None:
        self.echo(line)

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Bar:
    def __init__(self, total: int, description: str, unit: str) -> None:
        self.bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr, leave=True)

    def advance(self, done: int, line: str) -> None:
        self.bar.update(done)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def on_terminal() -> bool:
    return sys.stderr.isatty()


def reporter(
    total: Callable[[], int],
    description: str,
    unit: str,
    echo: Callable[[str], None],
    terminal: bool,
) -> Progress:
    """total is only asked for on a terminal: counting may cost a query."""
    return Bar(total(), description, unit) if terminal else PlainLines(echo)
