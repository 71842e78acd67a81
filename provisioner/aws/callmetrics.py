"""EC2 call metrics through botocore events: one record per API call (its retries included).

``before-call`` stamps the start into botocore's per-call context, ``needs-retry`` notes throttled
attempts, ``after-call`` / ``after-call-error`` report duration, final error code ("" on success) and
whether any attempt was throttled to an :class:`Ec2Observer` (:class:`provisioner.metrics.Metrics`
implements it), which also watches the limiter's rate per action. This module must not change
requests or answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from provisioner.aws.ratelimit import THROTTLE_CODES, LimitObserver

_START = "zonal_started"
_THROTTLED = "zonal_throttled"


class CallObserver(Protocol):
    def observe_ec2(self, request: str, seconds: float, error: str = "", throttled: bool = False) -> None: ...


class Ec2Observer(CallObserver, LimitObserver, Protocol):
    """Everything zonal reports about EC2: each call, and the limiter's rate per action."""


class CallMetrics:
    def __init__(self, observer: CallObserver, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._observer = observer
        self._now = monotonic

    def before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        context[_START] = self._now()
        context[_THROTTLED] = False

    def needs_retry(
        self, response: tuple[Any, Mapping[str, Any]] | None, request_dict: Mapping[str, Any], **_: Any
    ) -> None:
        if response is None:
            return
        code = str(response[1].get("Error", {}).get("Code", ""))
        context = request_dict.get("context")
        if code in THROTTLE_CODES and isinstance(context, dict):
            context[_THROTTLED] = True

    def after_call(
        self, http_response: Any, parsed: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        error = ""
        if int(getattr(http_response, "status_code", 200)) >= 300:
            error = str(parsed.get("Error", {}).get("Code", "")) or f"HTTP{http_response.status_code}"
        self._report(str(model.name), context, error)

    def after_call_error(
        self, exception: BaseException, context: dict[str, Any], event_name: str = "", **_: Any
    ) -> None:
        error = getattr(exception, "error_code", "") or type(exception).__name__
        self._report(event_name.rsplit(".", 1)[-1], context, str(error))

    def _report(self, request: str, context: dict[str, Any], error: str) -> None:
        started = context.pop(_START, None)
        seconds = self._now() - started if isinstance(started, float) else 0.0
        throttled = bool(context.pop(_THROTTLED, False)) or error in THROTTLE_CODES
        self._observer.observe_ec2(request, seconds, error, throttled)


def install_metrics(client: Any, observer: CallObserver) -> CallMetrics:
    """Report every API call of ``client`` to ``observer``."""
    hooks = CallMetrics(observer)
    service = client.meta.service_model.service_id.hyphenize()
    events = client.meta.events
    events.register(f"before-call.{service}", hooks.before_call, unique_id=f"zonal-metrics-b-{service}")
    events.register(f"needs-retry.{service}", hooks.needs_retry, unique_id=f"zonal-metrics-r-{service}")
    events.register(f"after-call.{service}", hooks.after_call, unique_id=f"zonal-metrics-a-{service}")
    events.register(
        f"after-call-error.{service}", hooks.after_call_error, unique_id=f"zonal-metrics-e-{service}"
    )
    return hooks
