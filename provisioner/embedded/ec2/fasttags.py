"""A constant-time ``get_tags`` for moto's EC2 resources, so the simulator stays fast with many volumes.

moto answers ``resource.get_tags()`` by running a full DescribeTags over every tag of the account with
a regular expression built from the resource id: O(all tags) per resource. DescribeVolumes renders the
tags of each volume it returns and evaluates ``tag:`` filters the same way, so with 1,000 volumes one
tag-filtered DescribeVolumes took about two seconds of CPU under the simulator's lock — the simulator,
not the code under test, became the bottleneck of the mass-provisioning benchmark. This replacement
reads the resource's own entry of the tag table and returns the same records (an exact id match, where
moto's pattern would also accept an id that merely starts with this one).

:func:`install` registers a simulator's account and patches moto's ``TaggedEC2Resource`` class once per
process; the replacement serves registered accounts only and hands every other account (``mock_aws``
tests, moto's default account) to moto's own method, so what those see does not depend on whether a
simulator ran earlier in the process. It must not change what any EC2 call answers.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

_lock = threading.Lock()
_moto_get_tags = TaggedEC2Resource.get_tags
_accounts: frozenset[str] = frozenset()  # the simulators' accounts; replaced whole, read without the lock


def _get_tags(self: Any) -> list[dict[str, str]]:
    if self.ec2_backend.account_id not in _accounts:
        return _moto_get_tags(self)
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    table: dict[str, dict[str, str]] = self.ec2_backend.tags  # EC2Backend is a TagBackend
    own = table.get(resource_id)
    if not own:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
        for key, value in list(own.items())
    ]


def install(account_id: str) -> None:
    """Serve the tags of ``account_id``'s resources from the tag table from now on."""
    global _accounts
    with _lock:
        _accounts = _accounts | {account_id}
        if TaggedEC2Resource.get_tags is not _get_tags:
            TaggedEC2Resource.get_tags = _get_tags  # type: ignore[method-assign]
