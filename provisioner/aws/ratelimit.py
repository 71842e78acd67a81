"""Client-side rate limiting per EC2 action, and retries bounded by the RPC deadline.

Why: EC2 throttles each API action from its own token bucket per account (CreateVolume 100 burst,
5/s; AttachVolume 50, 5/s; …). A driver that fires 100 concurrent CreateVolume calls and lets botocore
retry the throttles wastes requests, and botocore's own ``adaptive`` mode keeps one rate for the whole
client, so throttled CreateVolumes would slow AttachVolume too. Here every mutating action has its own
:class:`AdaptiveBucket`:

* it starts as EC2's documented default bucket for that action (× ``scale``, for accounts with raised
  limits or a simulator run faster), so one driver alone never sends a request EC2 would refuse;
* on ``RequestLimitExceeded`` (someone else shares the account's bucket) it cuts its rate by
  ``decrease_factor`` — at most once per ``decrease_interval``, since a burst of throttled answers is
  one signal — and forgets its saved-up tokens (the server's bucket is empty);
* it climbs back linearly to the documented rate over ``recover_seconds`` (additive increase).

Describe* calls are not limited here (they are batched, see :mod:`provisioner.aws.batcher`).

Retries: :class:`RetryPolicy` replaces botocore's retry handler. It retries what botocore's standard
mode would (throttles, 5xx, transient network errors) up to ``max_attempts``, with full-jitter
exponential backoff, but never sleeps past the deadline of the RPC being served
(:func:`provisioner.ports.clock.current_deadline`); without one, each call's total backoff is at most
``max_attempts - 1`` × ``max_backoff``. A wait for a token that would outlast the deadline (or
``max_wait``) is not started: the call fails at once with Unavailable and the CSI sidecar retries.

Both are installed on a client with :func:`install` (botocore events: ``before-send`` waits for a token
before every attempt, ``needs-retry`` learns from each answer and decides the retry). This module must
not translate errors into domain errors beyond its own Unavailable, nor know about volumes.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.retries.standard import RetryContext, StandardRetryConditions

from provisioner.errors import Unavailable
from provisioner.ports.clock import Clock, SystemClock, current_deadline

log = logging.getLogger(__name__)

THROTTLE_CODES = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled", "SlowDown"}
)


@dataclass(frozen=True)
class RateSpec:
    """A bucket: ``burst`` requests at once, refilled at ``rate`` per second."""

    burst: float
    rate: float


# EC2's documented default request-rate buckets ("Request throttling for the Amazon EC2 API").
RESOURCE_MUTATING = RateSpec(100, 5)
CREATE_TAGS = RateSpec(100, 10)
OTHER_MUTATING = RateSpec(50, 5)
_RESOURCE_MUTATING_ACTIONS = frozenset({"CreateVolume", "DeleteVolume", "CreateSnapshot", "DeleteSnapshot"})
_NON_MUTATING_PREFIXES = ("Describe", "Get", "List")


def default_spec(action: str) -> RateSpec | None:
    """EC2's default bucket for a mutating ``action``; None for the read-only ones (not limited)."""
    if action.startswith(_NON_MUTATING_PREFIXES):
        return None
    if action in _RESOURCE_MUTATING_ACTIONS:
        return RESOURCE_MUTATING
    if action == "CreateTags":
        return CREATE_TAGS
    return OTHER_MUTATING


@dataclass(frozen=True)
class LimiterSettings:
    scale: float = 1.0  # multiplies every documented rate (raised account limits, a faster simulator)
    decrease_factor: float = 0.7
    decrease_interval: float = 1.0
    recover_seconds: float = 10.0  # from any reduced rate back to the ceiling, linearly
    min_rate_fraction: float = 0.05  # never below this share of the ceiling
    max_wait: float = 60.0  # longest wait for a token when the call carries no deadline
    overrides: Mapping[str, RateSpec] | None = None  # per action, before scaling

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"rate scale must be positive, not {self.scale}")
        if not 0 < self.decrease_factor < 1:
            raise ValueError(f"decrease factor must be within (0, 1), not {self.decrease_factor}")


class AdaptiveBucket:
    """One action's bucket, as a ticket queue: each caller takes the next ticket and sleeps until the
    bucket has issued that many tokens, so callers go in arrival order; a decrease only slows the
    issuing, and every sleeper re-checks its ticket when it wakes. Thread-safe.

    It keeps one token in hand (``headroom``): EC2's bucket starts refilling when our first request
    reaches it, a little after our own started, and that first request may travel slower than later
    ones; one token covers a lag of up to ``1 / rate`` seconds for the price of one request."""

    def __init__(self, spec: RateSpec, clock: Clock, settings: LimiterSettings) -> None:
        self.ceiling = spec.rate * settings.scale
        headroom = 1.0 if spec.burst >= 10 else 0.0
        self.capacity = spec.burst - headroom
        self.rate = self.ceiling
        self._settings = settings
        self._floor = self.ceiling * settings.min_rate_fraction
        self._clock = clock
        self._lock = threading.Lock()
        self._issued = self.capacity  # tokens made available so far (the burst first)
        self._tickets = 0  # tokens handed out or promised
        self._stamp = clock.monotonic()
        self._last_decrease = float("-inf")
        self.throttles = 0
        self.decreases = 0

    def _advance(self, now: float) -> None:
        dt = now - self._stamp
        if dt <= 0:
            return
        self._issued = min(self._tickets + self.capacity, self._issued + dt * self.rate)
        if self.rate < self.ceiling:  # additive increase, back to the documented rate
            self.rate = min(self.ceiling, self.rate + self.ceiling * dt / self._settings.recover_seconds)
        self._stamp = now

    def tokens(self) -> float:
        """Tokens in hand (negative: promised to callers still waiting)."""
        with self._lock:
            self._advance(self._clock.monotonic())
            return self._issued - self._tickets

    def _due_in(self, ticket: int) -> float:
        # (+1 ns: arriving exactly when EC2's own bucket reaches one token must not lose to rounding)
        return 0.0 if self._issued >= ticket else (ticket - self._issued) / self.rate + 1e-9

    def acquire(self, budget: float) -> bool:
        """Wait for a token; False (and no ticket taken) if it would not come within ``budget`` seconds.
        Once a ticket is taken the caller waits its turn even if a decrease later pushes it past the
        budget: giving the ticket up would leave a hole in the queue."""
        with self._lock:
            self._advance(self._clock.monotonic())
            ticket = self._tickets + 1
            wait = self._due_in(ticket)
            if wait > budget:
                return False
            self._tickets = ticket
        while wait > 0:
            self._clock.sleep(wait)
            with self._lock:
                self._advance(self._clock.monotonic())
                wait = self._due_in(ticket)
        return True

    def throttled(self) -> None:
        """EC2 refused a request: the account's bucket is empty and someone else is drawing on it."""
        with self._lock:
            now = self._clock.monotonic()
            self._advance(now)
            self.throttles += 1
            if now - self._last_decrease < self._settings.decrease_interval:
                return
            self._last_decrease = now
            self.rate = max(self._floor, self.rate * self._settings.decrease_factor)
            self._issued = min(self._issued, float(self._tickets))  # no saved-up tokens any more
            self.decreases += 1


class RateLimiter:
    """One :class:`AdaptiveBucket` per mutating action, created on first use. Thread-safe."""

    def __init__(self, settings: LimiterSettings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or LimiterSettings()
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._buckets: dict[str, AdaptiveBucket | None] = {}

    def bucket(self, action: str) -> AdaptiveBucket | None:
        with self._lock:
            if action not in self._buckets:
                overrides = self.settings.overrides or {}
                spec = overrides.get(action) or default_spec(action)
                self._buckets[action] = (
                    AdaptiveBucket(spec, self.clock, self.settings) if spec is not None else None
                )
            return self._buckets[action]

    def acquire(self, action: str) -> None:
        """Wait for ``action``'s token, bounded by the current RPC deadline and ``max_wait``.

        Raises Unavailable when the token would come too late."""
        bucket = self.bucket(action)
        if bucket is None:
            return
        budget = self.settings.max_wait
        deadline = current_deadline()
        remaining = deadline.remaining() if deadline is not None else None
        if remaining is not None:
            budget = min(budget, remaining)
        if not bucket.acquire(max(0.0, budget)):
            raise Unavailable(
                f"{action}: client-side rate limit ({bucket.rate:.2f}/s) has no slot before the deadline; "
                "retry later"
            )

    def throttled(self, action: str) -> None:
        bucket = self.bucket(action)
        if bucket is not None:
            bucket.throttled()


class RetryPolicy:
    """Decides botocore's retries (the ``needs-retry`` event): botocore's standard conditions, full
    jitter, never past the RPC deadline; feeds throttles to the :class:`RateLimiter`."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        max_attempts: int = 5,
        base_backoff: float = 0.25,
        max_backoff: float = 5.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.limiter = limiter
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.clock: Clock = clock or SystemClock()
        self._conditions = StandardRetryConditions(max_attempts=max_attempts)
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_backoff, base × 2^(attempt-1))]."""
        with self._rng_lock:
            roll = self._rng.random()
        return roll * min(self.max_backoff, self.base_backoff * 2.0 ** (attempt - 1))

    def needs_retry(
        self,
        response: tuple[Any, Mapping[str, Any]] | None,
        attempts: int,
        caught_exception: Exception | None,
        operation: Any,
        request_dict: Mapping[str, Any],
        **_: Any,
    ) -> float | None:
        http, parsed = response if response is not None else (None, None)
        code = str((parsed or {}).get("Error", {}).get("Code", "")) if parsed else ""
        action = str(operation.name)
        if code in THROTTLE_CODES and self.limiter is not None:
            self.limiter.throttled(action)
        if isinstance(caught_exception, Unavailable):
            return None  # our own limiter gave up: no retry
        context = RetryContext(
            attempt_number=attempts,
            operation_model=operation,
            http_response=http,
            parsed_response=parsed,
            caught_exception=caught_exception,
            request_context=dict(request_dict.get("context") or {}),
        )
        if not self._conditions.is_retryable(context):
            return None
        delay = self.backoff(attempts)
        deadline = current_deadline()
        remaining = deadline.remaining() if deadline is not None else None
        if remaining is not None and delay >= remaining:
            log.debug("%s: not retrying %s, the deadline is %.2fs away", action, code or "error", remaining)
            return None
        return delay


def install(client: Any, limiter: RateLimiter | None, retry: RetryPolicy) -> None:
    """Put ``limiter`` and ``retry`` on ``client`` in place of botocore's retry handler.

    The token wait is registered first on ``before-send`` so it happens before any other handler
    answers the request (the in-process simulator answers there)."""
    service = client.meta.service_model.service_id.hyphenize()
    events = client.meta.events
    events.unregister(f"needs-retry.{service}", unique_id=f"retry-config-{service}")
    events.register(f"needs-retry.{service}", retry.needs_retry, unique_id=f"zonal-retry-{service}")
    if limiter is not None:

        def before_send(event_name: str = "", **_: Any) -> None:
            limiter.acquire(event_name.rsplit(".", 1)[-1])

        events.register_first(f"before-send.{service}", before_send, unique_id=f"zonal-limit-{service}")
