"""The one token bucket: at most ``capacity`` tokens in hand, refilled at ``rate`` per second.

Why: three parts of zonal count the same tokens — the EC2 simulator's account buckets (take a token or
be refused), the Kubernetes client's request limit (wait for a token) and the adaptive EC2 limiter
(callers wait in arrival order while the rate changes under them). One class keeps the tokens as two
running counts, so a refusal, a wait and a rate change are all exact:

* ``issued``: tokens made available so far (a new bucket starts full: ``capacity``);
* ``granted``: tokens handed out, or promised to callers still waiting (a ticket is the number of the
  token a caller waits for).

``issued - granted`` is the level; below zero, tokens are promised. A refill adds ``rate`` × elapsed
time (or an amount the caller computed, for a rate that changed meanwhile) but never lets more than
``capacity`` tokens pile up in hand.

Time is passed in (``now``, on a monotonic scale): this module must not read a clock, sleep or lock.
Its callers do that (:class:`provisioner.ports.clock.Clock`).
"""

from __future__ import annotations


class TokenBucket:
    """Not thread-safe: callers hold their own lock."""

    __slots__ = ("capacity", "granted", "issued", "rate", "stamp")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        if capacity < 0 or rate < 0:
            raise ValueError(f"a token bucket needs a non-negative size and rate, not {capacity}, {rate}")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.issued = self.capacity
        self.granted = 0
        self.stamp = now

    def refill(self, now: float, tokens: float | None = None) -> None:
        """Bring the bucket to ``now``: ``tokens`` more (default: ``rate`` × the time since the last
        refill), never more than ``capacity`` in hand. A ``now`` in the past changes nothing."""
        if now <= self.stamp:
            return
        added = (now - self.stamp) * self.rate if tokens is None else tokens
        self.issued = min(self.granted + self.capacity, self.issued + added)
        self.stamp = now

    def level(self, now: float) -> float:
        """Tokens in hand at ``now`` (negative: promised to waiting callers)."""
        self.refill(now)
        return self.issued - self.granted

    def try_take(self, now: float) -> bool:
        """Take one token if one is in hand (an account's bucket: no token, no request)."""
        self.refill(now)
        if self.issued - self.granted >= 1.0:
            self.granted += 1
            return True
        return False

    def reserve(self, now: float) -> int:
        """Take the next ticket, whether or not its token exists yet; wait :meth:`due_in` for it."""
        self.refill(now)
        self.granted += 1
        return self.granted

    def due_in(self, ticket: int) -> float:
        """Seconds until ``ticket``'s token is issued at the current rate (0 if it already is).

        Valid at the last refill; a rate change meanwhile moves it, so a waiter asks again on waking."""
        missing = ticket - self.issued
        if missing <= 0:
            return 0.0
        if self.rate <= 0:
            return float("inf")
        # +1 ns: arriving exactly when an account's bucket reaches one token must not lose to rounding.
        return missing / self.rate + 1e-9

    def waiting(self) -> bool:
        """Whether a ticket has been handed out whose token is not issued yet."""
        return self.granted > self.issued

    def spend(self, now: float, tokens: float) -> float:
        """Remove up to ``tokens`` from those in hand (another spender's share); the amount removed."""
        self.refill(now)
        spent = max(0.0, min(tokens, self.issued - self.granted))
        self.issued -= spent
        return spent

    def forget_saved(self, used: int | None = None) -> None:
        """Drop the tokens in hand (the account's bucket turned out empty). Promises stand, except
        those past ``used`` (the tickets whose holders have not used them yet, when the caller knows)."""
        self.issued = min(self.issued, float(self.granted if used is None else used))
