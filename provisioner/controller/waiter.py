"""Waiter: polls the cloud until a state is reached, on the injected clock, never past the deadline.

It knows nothing of what it waits for (the caller's check says); it must not call the cloud itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from provisioner.config import ControllerConfig
from provisioner.errors import DeadlineExceeded
from provisioner.ports.clock import Clock, Deadline

R = TypeVar("R")


class Waiter:
    """Polls until a check returns a value: an initial delay, then exponential backoff capped at
    ``wait_max_delay``, never sleeping past the deadline."""

    def __init__(self, clock: Clock, config: ControllerConfig) -> None:
        self.clock = clock
        self.config = config

    def deadline(self, deadline: Deadline | None) -> Deadline:
        """The caller's deadline, or the configured default wait when the call carries none."""
        if deadline is None or deadline.at is None:
            return Deadline(self.clock, self.config.default_wait_timeout)
        return deadline

    def sooner(self, deadline: Deadline, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, or ``deadline`` if that comes first."""
        remaining = deadline.remaining()
        return Deadline(self.clock, seconds if remaining is None else min(seconds, remaining))

    def wait(self, until: Deadline, check: Callable[[], R | None], what: Callable[[], str]) -> R:
        """Call ``check`` after each pause until it returns non-None. Raises DeadlineExceeded with
        ``what()`` (a description of the state still awaited) when ``until`` passes."""
        delay = self.config.wait_initial_delay
        while True:
            pause = until.bounded(delay)
            if pause <= 0:
                raise DeadlineExceeded(what())
            self.clock.sleep(pause)
            result = check()
            if result is not None:
                return result
            delay = min(delay * self.config.wait_factor, self.config.wait_max_delay)
