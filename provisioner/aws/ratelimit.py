"""Client-side rate limiting per EC2 action, and retries bounded by the RPC deadline.

Why: EC2 throttles each API action from its own token bucket per account (:mod:`provisioner.aws.rates`).
A driver that fires 100 concurrent CreateVolume calls and lets botocore retry the throttles wastes
requests, and botocore's own ``adaptive`` mode keeps one rate for the whole client, so throttled
CreateVolumes would slow AttachVolume too. Here every mutating action has its own
:class:`~provisioner.aws.adaptive.AdaptiveBucket`, which starts as EC2's documented bucket and finds the
account's real rate from EC2's answers (raised limits, a neighbour spending part of the bucket). A
throttle of one action reaches only that action's bucket.

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
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from botocore.retries.standard import RetryContext, StandardRetryConditions

from provisioner.aws.adaptive import AdaptiveBucket, LimiterSettings
from provisioner.aws.rates import documented, is_mutating
from provisioner.errors import Unavailable
from provisioner.ports.clock import Clock, SystemClock, current_deadline

log = logging.getLogger(__name__)

THROTTLE_CODES = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled", "SlowDown"}
)


class LimitObserver(Protocol):
    def watch_ec2_rate(self, request: str, rate: Callable[[], float]) -> None:
        """``rate()`` is the limiter's current rate for ``request`` (calls per second), read on demand."""
        ...


class RateLimiter:
    """One :class:`AdaptiveBucket` per mutating action, created on first use. Thread-safe.

    botocore sends an attempt and hands its answer to the retry handler in the same thread, so each
    thread remembers which cut of the bucket its last request was sent under: a throttle of a request
    sent before the latest cut is not a new signal."""

    def __init__(
        self,
        settings: LimiterSettings | None = None,
        clock: Clock | None = None,
        observer: LimitObserver | None = None,
    ) -> None:
        self.settings = settings or LimiterSettings()
        self.clock: Clock = clock or SystemClock()
        self._observer = observer
        self._lock = threading.Lock()
        self._buckets: dict[str, AdaptiveBucket | None] = {}
        self._sent_under = threading.local()  # action → the bucket's cut count when this thread sent

    def _epochs(self) -> dict[str, int]:
        epochs: dict[str, int] | None = getattr(self._sent_under, "epochs", None)
        if epochs is None:
            epochs = self._sent_under.epochs = {}
        return epochs

    def bucket(self, action: str) -> AdaptiveBucket | None:
        with self._lock:
            if action in self._buckets:
                return self._buckets[action]
            bucket = None
            if is_mutating(action):
                bucket = AdaptiveBucket(documented(action), self.clock, self.settings, action)
            self._buckets[action] = bucket
        if bucket is not None and self._observer is not None:
            self._observer.watch_ec2_rate(action, lambda: bucket.rate)
        return bucket

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
        self._epochs()[action] = bucket.decreases

    def throttled(self, action: str) -> None:
        """EC2 refused this thread's last ``action`` request for its rate."""
        bucket = self.bucket(action)
        if bucket is not None:
            bucket.throttled(self._epochs().get(action))


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
