"""One EC2 action's client-side limit, found by watching EC2's answers: :class:`AdaptiveBucket`.

Why: EC2 throttles each action from a token bucket per account (:mod:`provisioner.aws.rates`), whose
size and refill rate zonal cannot read. It may be the documented default, raised by AWS on request,
or shared with another tool of the account that spends part of it. Sending faster than the account
refills only earns ``RequestLimitExceeded``; sending slower leaves volumes waiting for nothing.

How the bucket finds the account's rate:

* **Start** as the documented bucket (× the operator's ``scale``, a starting point, not a ceiling), so
  a fresh driver alone never sends what a default account would refuse. Its first burst goes out at
  most ``burst_pace`` × the rate, so an account with a smaller bucket throttles a few calls, not the
  whole burst.
* **Probe** only while demand exceeds the rate (callers waited all along for tokens): after a ``hold``
  of such demand, while searching (until a throttle has been measured) the rate doubles every
  ``start_doubling`` seconds; once found, it climbs by ``climb`` × the rate found per second, and past
  1.25 × that rate (the account's limit has moved) doubles every ``probe_doubling`` seconds.
* **Cut** on a throttle. A throttle says the account's bucket is empty *now*. Two such moments with
  demand in between bracket an exact measurement: our calls EC2 admitted between them, per second,
  are the rate the account gives us (whatever a neighbour takes is already out of it). The cut goes to
  ``margin`` × that measurement (never above the current rate). With no earlier throttle, the start
  (or the end of an idle spell, when our bucket and so the account's are full) is the first moment,
  the account's burst guessed to be as many seconds of its refill as the documented one; a guess keeps
  the search going. A throttle right after a cut (too few calls since to measure) cuts the rate ×
  ``fallback_cut``. A guess or such a cut waits for a second throttle (one may be chance). Answers to
  calls sent before a cut belong to that cut. The hold after a cut doubles (up to ``hold_max``) while
  measurements agree within 10 %, so a stable account is probed rarely and a changed one promptly. A
  throttle during that hold while EC2 still admits about all we send is taken for chance, not a cut
  (the account's bucket is filling then); the rate never falls below ``min_rate_fraction`` of the
  start.

The burst follows the rate (documented size × rate / documented rate). Everything runs on the
injected clock; this module must not know about boto3 or which action it limits.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass

from provisioner.aws.rates import RateSpec
from provisioner.ports.clock import Clock
from provisioner.tokenbucket import TokenBucket

log = logging.getLogger("zonal.limiter")


@dataclass(frozen=True)
class LimiterSettings:
    """How every action's :class:`AdaptiveBucket` starts, probes and cuts (seconds count demand)."""

    scale: float = 1.0  # starting point: the documented buckets × scale, size and rate alike
    burst_pace: float = 10.0  # saved-up tokens go out at most this many times the rate
    start_doubling: float = 2.0  # until a throttle is measured, the rate doubles this often
    hold_min: float = 4.0  # after a cut, no probing for this long; doubled while measurements agree
    hold_max: float = 60.0
    climb: float = 0.025  # after the hold: + this share of the rate found, per second
    probe_doubling: float = 4.0  # past 1.25 × the rate found: the rate doubles this often
    margin: float = 0.98  # a cut goes to this share of the rate measured
    fallback_cut: float = 0.7  # a cut with nothing to measure from
    decrease_interval: float = 1.0  # throttles this close to a cut belong to it (when sent when is unknown)
    measure_window: float = 120.0  # the oldest throttle a measurement may start from
    measure_tokens: float = 8.0  # a measurement spans at least this many admitted calls,
    measure_seconds: float = 4.0  # or this long with at least 3 (a slow account)
    min_rate_fraction: float = 0.1  # never below this share of the starting rate
    max_rate_factor: float = 200.0  # never above this many times the starting rate
    max_wait: float = 60.0  # longest wait for a token when the call carries no deadline
    recheck: float = 0.25  # a waiting caller looks at its turn again at least this often

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"rate scale must be positive, not {self.scale}")
        if not 0 < self.margin <= 1:
            raise ValueError(f"margin must be within (0, 1], not {self.margin}")
        if not 0 < self.fallback_cut < 1:
            raise ValueError(f"fallback cut must be within (0, 1), not {self.fallback_cut}")


@dataclass
class _Mark:
    """A moment the account's bucket level was known: empty (a cut) or full (start, end of idle), and
    how many of our calls EC2 had admitted by then."""

    at: float
    admitted: int
    full: bool


class AdaptiveBucket:
    """One action's bucket, as a ticket queue: each caller takes the next ticket and sleeps until the
    bucket has issued that many tokens, so callers go in arrival order; a cut only slows the issuing,
    and every sleeper re-checks its ticket when it wakes. Thread-safe.

    It keeps one token in hand (``headroom``): EC2's bucket starts refilling when our first request
    reaches it, a little after our own started, and that first request may travel slower than later
    ones; one token covers a lag of up to ``1 / rate`` seconds for the price of one request."""

    def __init__(self, spec: RateSpec, clock: Clock, settings: LimiterSettings, name: str = "") -> None:
        self.name = name
        self.start = spec.scaled(settings.scale)
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._headroom = 1.0 if self.start.burst >= 10 else 0.0
        self._min_rate = self.start.rate * settings.min_rate_fraction
        self._max_rate = self.start.rate * settings.max_rate_factor
        now = clock.monotonic()
        self._bucket = TokenBucket(self._capacity_for(self.start.rate), self.start.rate, now)
        self._next_slot = now  # burst pacing: the earliest moment the next ticket may go
        self._searching = True  # no throttle measured yet: probe fast
        self._hold = 0.0  # seconds of demand before probing resumes
        self._hold_next = settings.hold_min
        self.found: float | None = None  # the account's rate for us, as last measured
        self._last_cut = float("-inf")
        self._last_cut_measured = False
        self._unconfirmed = False  # a throttle seen since the last cut, not acted on yet
        self._marks: deque[_Mark] = deque([_Mark(now, 0, True)])
        self.sent = 0  # tokens used (every attempt, retries included)
        self.throttles = 0
        self.decreases = 0

    # --- reading -------------------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Tokens per second issued now."""
        return self._bucket.rate

    @property
    def capacity(self) -> float:
        """Tokens that may pile up in hand (the burst, less the headroom)."""
        return self._bucket.capacity

    def tokens(self) -> float:
        """Tokens in hand (negative: promised to callers still waiting)."""
        with self._lock:
            return self._advance(self._clock.monotonic())

    # --- the queue -----------------------------------------------------------------------------------

    def acquire(self, budget: float) -> bool:
        """Wait for a token; False (and no ticket taken) if it would not come within ``budget`` seconds.
        Once a ticket is taken the caller waits its turn even if a cut later pushes it past the budget:
        giving the ticket up would leave a hole in the queue."""
        with self._lock:
            now = self._clock.monotonic()
            self._advance(now)
            slot = max(now, self._next_slot)
            wait = max(self._bucket.due_in(self._bucket.granted + 1), slot - now)
            if wait > budget:
                return False
            ticket = self._bucket.reserve(now)
            self._next_slot = slot + 1.0 / (self._settings.burst_pace * self.rate)
        while wait > 0:
            # Wake up now and then: the rate may have risen meanwhile (probing), moving the turn closer.
            self._clock.sleep(min(wait, self._settings.recheck))
            with self._lock:
                now = self._clock.monotonic()
                self._advance(now)
                wait = max(self._bucket.due_in(ticket), slot - now)
        with self._lock:
            self.sent += 1
        return True

    def throttled(self, epoch: int | None = None) -> None:
        """EC2 refused a request: the account's bucket is empty at this moment.

        ``epoch`` is :attr:`decreases` when the refused request was sent: one sent before the last cut
        reports what that cut already answered. Without it, throttles within ``decrease_interval`` of
        a cut count as that cut's."""
        with self._lock:
            now = self._clock.monotonic()
            self._advance(now)
            self.throttles += 1
            if epoch is not None:
                stale = epoch < self.decreases
            else:
                stale = now - self._last_cut < self._settings.decrease_interval
            if not stale and not self._noise(now):
                self._cut(now)
            elif stale and self._marks:
                # Sent before the last cut, counted admitted then: it was not.
                self._marks[-1].admitted -= 1

    # --- inside the lock -----------------------------------------------------------------------------

    def _noise(self, now: float) -> bool:
        """A throttle during the hold after a measured cut, while EC2 still admits about all we send:
        not the account's bucket running dry (at the margin below its rate it is filling up)."""
        if self._hold <= 0 or not self._last_cut_measured or not self._marks:
            return False
        mark = self._marks[-1]
        admitted = self._admitted() - mark.admitted
        span = now - mark.at
        return self._measurable(admitted, span) and admitted >= 0.9 * self.rate * span

    def _measurable(self, admitted: int, span: float) -> bool:
        s = self._settings
        return admitted >= s.measure_tokens or (admitted >= 3 and span >= s.measure_seconds)

    def _capacity_for(self, rate: float) -> float:
        return max(1.0, self.start.burst * rate / self.start.rate - self._headroom)

    def _advance(self, now: float) -> float:
        """Issue the tokens due since the last call, probing upward while callers waited; the level."""
        bucket = self._bucket
        elapsed = now - bucket.stamp
        if elapsed <= 0:
            return bucket.issued - bucket.granted
        tokens, rate, hold = bucket.rate * elapsed, bucket.rate, self._hold
        if bucket.waiting() and bucket.granted >= bucket.issued + tokens - 1e-6:
            # Callers waited all along: no token was left in hand at this rate. Demand exceeds it.
            tokens, rate, hold = self._probe(elapsed)
        bucket.refill(now, tokens)
        bucket.rate = min(self._max_rate, rate)
        self._hold = hold
        bucket.capacity = self._capacity_for(bucket.rate)
        level = bucket.issued - bucket.granted
        last = self._marks[-1] if self._marks else None
        if level >= bucket.capacity and (last is None or not last.full or last.admitted != self._admitted()):
            # Idle long enough for our bucket to fill: the account's (same shape) is full again.
            self._marks.clear()
            self._marks.append(_Mark(now, self._admitted(), True))
        return level

    def _probe(self, elapsed: float) -> tuple[float, float, float]:
        """Tokens issued over ``elapsed`` seconds of demand, the rate at their end, the hold left."""
        s = self._settings
        rate = self._bucket.rate
        tokens = 0.0
        held = min(self._hold, elapsed)
        tokens += rate * held
        left = elapsed - held
        if left <= 0:
            return tokens, rate, self._hold - held
        found = self.found
        if not self._searching and found is not None and rate < 1.25 * found:
            # Climb linearly towards (and a little past) the rate last found.
            step = s.climb * found
            t = min(left, (1.25 * found - rate) / step)
            tokens += rate * t + step * t * t / 2
            rate += step * t
            left -= t
        if left > 0:
            doubling = s.start_doubling if self._searching else s.probe_doubling
            growth = 2.0 ** (left / doubling)
            tokens += rate * doubling / math.log(2) * (growth - 1)
            rate *= growth
        return tokens, rate, 0.0

    def _admitted(self) -> int:
        return self.sent - self.throttles

    def _measure(self, now: float) -> tuple[float, bool]:
        """The rate to cut to, and whether it was measured (see the docstring) or only guessed."""
        s = self._settings
        admitted = self._admitted()
        empty = [m for m in self._marks if not m.full and now - m.at <= s.measure_window]
        if empty:
            mark = empty[-1]  # the last cut: what the account gave us since
            if not self._measurable(admitted - mark.admitted, now - mark.at):
                return self.rate * s.fallback_cut, False  # throttled again at once: not cut enough
            return (admitted - mark.admitted) / (now - mark.at), True
        full = [m for m in self._marks if m.full]
        if full and admitted - full[-1].admitted >= self.start.burst / 8:
            # The account's burst assumed to scale with its rate, as in the documented table (and to
            # be at least an eighth of the documented one: fewer calls than that prove too little).
            mark = full[-1]
            burst_seconds = self.start.burst / self.start.rate
            return (admitted - mark.admitted) / (now - mark.at + burst_seconds), False
        return self.rate * s.fallback_cut, False

    def _cut(self, now: float) -> None:
        s = self._settings
        target, measured = self._measure(now)
        if not measured and not self._unconfirmed:
            # A guess rests on one throttle, which may be chance: wait for a second one to act.
            self._unconfirmed = True
            return
        self._unconfirmed = False
        previous = self.found
        if measured and previous is not None and abs(target - previous) <= 0.1 * previous:
            self._hold_next = min(s.hold_max, self._hold_next * 2)
        else:
            self._hold_next = s.hold_min
        self._hold = self._hold_next
        bucket = self._bucket
        before = bucket.rate
        bucket.rate = min(self._max_rate, max(self._min_rate, min(bucket.rate, target) * s.margin))
        self._last_cut_measured = measured
        if measured:
            self.found = target
            self._searching = False  # probe gently from here on
        log.info(
            "%s throttled: %.2f/s → %.2f/s (%s %.2f/s), next probe after %.0f s of demand",
            self.name or "EC2",
            before,
            bucket.rate,
            "the account gave" if measured else "not measured, guessed",
            target,
            self._hold,
        )
        bucket.capacity = self._capacity_for(bucket.rate)
        # The account's bucket is empty: no saved-up tokens on our side either, not even those handed
        # to callers still waiting for their place in a paced burst.
        bucket.forget_saved(self.sent)
        self._last_cut = now
        self._marks.append(_Mark(now, self._admitted(), False))
        while len(self._marks) > 1 and now - self._marks[0].at > s.measure_window:
            self._marks.popleft()  # too old to measure from
        self.decreases += 1
