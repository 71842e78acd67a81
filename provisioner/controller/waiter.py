"""Waiter: polls the cloud until a state is reached, on the injected clock, never past the deadline.

It knows nothing of what it waits for (the caller's check says) nor when to check (a
:class:`~.pacing.Pace` says: the fixed backoff unless the caller brings a learned one); it must not
call the cloud itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from provisioner.config import ControllerConfig
from provisioner.controller.pacing import Backoff, Pace
from provisioner.errors import DeadlineExceeded
from provisioner.ports.clock import Clock, Deadline

R = TypeVar("R")


class Waiter:
    """Polls until a check returns a value, never sleeping past the deadline: by default an initial
    delay, then exponential backoff capped at ``wait_max_delay``."""

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

    def backoff(self) -> Backoff:
        """The fixed schedule: ``wait_initial_delay``, then ×``wait_factor``, at most ``wait_max_delay``."""
        c = self.config
        return Backoff(c.wait_initial_delay, c.wait_factor, c.wait_max_delay)

    def wait(
        self,
        until: Deadline,
        check: Callable[[], R | None],
        what: Callable[[], str],
        pace: Pace | None = None,
    ) -> R:
        """Call ``check`` after each pause ``pace`` asks for (the fixed backoff without one) until it
        returns non-None, telling ``pace`` what each check found. Raises DeadlineExceeded with
        ``what()`` (a description of the state still awaited) when ``until`` passes."""
        pace = pace if pace is not None else self.backoff()
        started = self.clock.monotonic()
        while True:
            pause = until.bounded(pace.pause(self.clock.monotonic() - started))
            if pause <= 0:
                raise DeadlineExceeded(what())
            self.clock.sleep(pause)
            result = check()
            pace.checked(result is not None)
            if result is not None:
                return result
