"""EC2's ClientToken idempotency, the one model the embedded EC2 simulator and the tests' FakeCloud share.

What EC2 documents, and both stand-ins therefore do: a request repeated with a client token already seen
and the same parameters — the Availability Zone aside — answers with the first request's resource, as
it is now (``deleted`` once deleted); the same token with other parameters answers
``IdempotentParameterMismatch``. Tokens never expire here (EC2 keeps them for at least 24 hours, longer
than any test or demo runs).

This module only remembers and compares: each caller decides what "the parameters" are (the simulator
the request's wire parameters, FakeCloud the VolumeSpec, both without the zone) and raises its own
error on :class:`TokenMismatch`. It must not import moto.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

P = TypeVar("P")  # what must repeat exactly on a retry
R = TypeVar("R")  # what the first request made


class TokenMismatch(Exception):
    """The token was seen with other parameters (EC2's IdempotentParameterMismatch)."""

    MESSAGE = (
        "Parameters on this idempotent request are inconsistent with parameters used in previous request(s)."
    )


class SeenTokens(Generic[P, R]):
    """Client tokens seen so far, each with its request's parameters and what that request made."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[P, R]] = {}
        self._lock = threading.Lock()

    def replay(self, token: str | None, params: P) -> R | None:
        """What the first request with ``token`` made, when ``params`` repeat it; None for a new token
        (or none). Raises TokenMismatch when the token was seen with other parameters."""
        if not token:
            return None
        with self._lock:
            seen = self._seen.get(token)
        if seen is None:
            return None
        if seen[0] != params:
            raise TokenMismatch(TokenMismatch.MESSAGE)
        return seen[1]

    def record(self, token: str | None, params: P, made: R) -> None:
        """Remember the request that just made ``made`` (nothing without a token)."""
        if token:
            with self._lock:
                self._seen[token] = (params, made)
