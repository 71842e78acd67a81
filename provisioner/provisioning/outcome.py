"""What one attempt on one object tells the work queue to do next.

Why it exists: the provisioning core and the deletion rules both answer with an :class:`Outcome`; keeping
these values apart lets each module stay small without import cycles. Values only; no behaviour (the
informers' read port, ``Lister``, is :mod:`provisioner.ports.kube`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Step(enum.Enum):
    DONE = "done"  # nothing more to do; forget the backoff
    RETRY = "retry"  # again after the item's exponential backoff
    RETRY_SLOW = "retry-slow"  # again after retry_interval_max
    RESCHEDULED = "rescheduled"  # selected-node removed; the claim comes back when the scheduler decides
    STOP = "stop"  # never again by itself (the driver cannot do it)
    IGNORED = "ignored"  # not ours / not ready for us


@dataclass(frozen=True)
class Outcome:
    step: Step
    message: str = ""
