"""How ``zonal demo`` talks to a person: numbered steps, a spinner while waiting, colour only on a TTY.

Nothing here knows the story; it only prints. Every step ends in ✓ or ✗; a failed step raises
:class:`StepFailed` so the demo stops, cleans up and exits non-zero.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

T = TypeVar("T")


class StepFailed(Exception):
    """A demo step did not do what it promised; the message says what happened instead."""


class Ui:
    def __init__(self, out: TextIO | None = None, color: bool | None = None) -> None:
        self.out = out or sys.stdout
        tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.tty = tty
        self.color = tty if color is None else color
        self.steps = 0
        self.progress_every = 10.0  # seconds between "still waiting" lines when not on a terminal

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def title(self, text: str) -> None:
        self._print("")
        self._print(self._c("1", text))

    def step(self, text: str) -> None:
        self.steps += 1
        self._print(f"{self._c('1;34', f'[{self.steps:>2}]')} {text}")

    def ok(self, text: str) -> None:
        self._print(f"     {self._c('32', '✓')} {text}")

    def fail(self, text: str) -> None:
        self._print(f"     {self._c('31', '✗')} {text}")

    def info(self, text: str) -> None:
        self._print(f"       {text}")

    def note(self, text: str) -> None:
        self._print(f"     {self._c('33', '!')} {text}")

    def block(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            self._print(f"       {self._c('2', '│')} {line}")

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextmanager
    def spinner(self, text: str, timeout: float | None = None) -> Iterator[None]:
        """Show ``text`` with a spinner and the time waited (TTY), or with an ellipsis and then a line
        every :attr:`progress_every` seconds saying how long so far (pipes, CI logs)."""
        done = threading.Event()
        start = time.monotonic()
        limit = f" of {timeout:.0f}s" if timeout else ""

        def report() -> None:
            while not done.wait(self.progress_every):
                waited = time.monotonic() - start
                self._print(f"       … {text}: still waiting ({waited:.0f}s{limit} so far)")

        def spin() -> None:
            for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
                if done.wait(0.1):
                    break
                elapsed = time.monotonic() - start
                self.out.write(f"\r       {frame} {text} ({elapsed:.1f}s)")
                self.out.flush()
            self.out.write("\r\033[K")
            self.out.flush()

        if not self.tty:
            self._print(f"       … {text}")
        thread = threading.Thread(target=spin if self.tty else report, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def wait_for(self, text: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Poll ``check`` until it returns something, under a spinner; StepFailed on timeout."""
        deadline = time.monotonic() + timeout
        with self.spinner(text, timeout):
            while True:
                value = check()
                if value is not None:
                    return value
                if time.monotonic() > deadline:
                    raise StepFailed(f"gave up after {timeout:.0f}s: {text}")
                time.sleep(0.1)
