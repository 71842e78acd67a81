"""Kubernetes client failures → the KubeApi port's error tree (see :mod:`provisioner.ports.kube`).

Why it exists: ``ApiException`` and urllib3's errors must never leave :mod:`provisioner.kube`; every
adapter call goes through :func:`translated`, most specific case first, ``raise ... from e`` kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException, OpenApiException

from provisioner.ports.kube import (
    KubeAlreadyExists,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubeUnavailable,
    ResourceGone,
)

_ERRNO_RE = re.compile(r"\[Errno -?\d+\]\s*([^'\")]+)")


def _message(e: ApiException) -> str:
    body = getattr(e, "body", None) or getattr(e, "data", None)
    if body:
        try:
            status = json.loads(body)
            if isinstance(status, dict) and status.get("message"):
                return str(status["message"])
        except (TypeError, ValueError):
            pass
    return f"{e.status} {e.reason}".strip()


def _where(e: BaseException) -> str:
    pool = getattr(e, "pool", None)
    host = getattr(pool, "host", None)
    if not host:
        return ""
    scheme, port = getattr(pool, "scheme", "https"), getattr(pool, "port", None)
    return f" at {scheme}://{host}" + (f":{port}" if port else "")


def network_reason(e: BaseException) -> str:
    """The cause of a failed connection in a few words ("connection refused", "timed out"), not
    urllib3's pool-and-retry wrapping."""
    inner: BaseException = e
    while isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    text = str(inner)
    if m := _ERRNO_RE.search(text):  # before the timeout test: NewConnectionError is a timeout class
        return m.group(1).strip().lower()
    if isinstance(inner, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(inner, urllib3.exceptions.NameResolutionError) or "resolve" in text.lower():
        return "the host name does not resolve"
    return text.strip() or type(inner).__name__


def translate(e: Exception, verb: str) -> KubeError:
    if isinstance(e, ApiException):
        status, message = int(e.status or 0), _message(e)
        if status == 404:
            return KubeNotFound(message)
        if status == 409:
            return KubeAlreadyExists(message) if verb == "create" else KubeConflict(message)
        if status == 410:
            return ResourceGone(message)
        if status in (401, 403):
            return KubeForbidden(message)
        if status == 429 or status >= 500 or status == 0:
            return KubeUnavailable(message or "API server unavailable")
        return KubeError(f"{verb}: {message}")
    if isinstance(e, (urllib3.exceptions.HTTPError, OSError)):
        return KubeUnavailable(f"{verb}: cannot reach the API server{_where(e)}: {network_reason(e)}")
    return KubeError(f"{verb}: {e}")


@contextmanager
def translated(verb: str) -> Iterator[None]:
    try:
        yield
    except KubeError:
        raise
    except (OpenApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
        raise translate(e, verb) from e
