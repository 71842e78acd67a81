"""One CSI page of a listing out of EC2's pages: ListVolumes and ListSnapshots over DescribeVolumes/Snapshots.

Pagination. EC2 refuses ``MaxResults`` outside 5..500 (DescribeVolumes) or 5..1000
(DescribeSnapshots), while CSI callers may ask for any ``max_entries``. Our page token is therefore
``"<skip>:<EC2 NextToken>"``: re-read the EC2 page that starts at that NextToken, skip ``skip``
items. A smaller ``max_entries`` is served from a 5-item EC2 page; a larger one is clamped (CSI
allows returning fewer entries than asked). A token we cannot parse, or one EC2 refuses, raises
InvalidArgument (the controller core answers ABORTED, per the ListVolumes error table).

Pure functions over a ``fetch`` callable; no boto3 here (the EC2 adapter passes its own fetch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from provisioner.aws import convert
from provisioner.errors import InvalidArgument, shown
from provisioner.model import Page

T = TypeVar("T")

# A ListVolumes/ListSnapshots page request: (MaxResults, EC2 NextToken) → (raw items, EC2 NextToken).
Fetch = Callable[[int, str], tuple[Sequence[convert.Raw], str]]


def page(
    fetch: Fetch,
    max_results: int,
    next_token: str,
    bounds: tuple[int, int],
    to_model: Callable[[convert.Raw], T],
) -> Page[T]:
    """One CSI page out of EC2 pages; see the module docstring for the token format."""
    skip, ec2_token = parse_token(next_token)
    low, high = bounds
    if max_results <= 0:  # CSI: no max_entries means "everything from the token on"
        items: list[convert.Raw] = []
        raw, token = fetch(high, ec2_token)
        items.extend(raw[skip:])
        while token:
            raw, token = fetch(high, token)
            items.extend(raw)
        return Page(tuple(to_model(i) for i in items))
    want = min(max_results, high)
    raw, token = fetch(max(low, min(high, skip + want)), ec2_token)
    chosen = raw[skip : skip + want]
    if skip + want < len(raw):
        return Page(tuple(to_model(i) for i in chosen), f"{skip + want}:{ec2_token}")
    while not chosen and token:  # filtered EC2 pages may be empty; never hand out an empty page
        ec2_token = token
        raw, token = fetch(max(low, want), ec2_token)
        chosen = raw[:want]
        if want < len(raw):
            return Page(tuple(to_model(i) for i in chosen), f"{want}:{ec2_token}")
    return Page(tuple(to_model(i) for i in chosen), f"0:{token}" if token else "")


def parse_token(token: str) -> tuple[int, str]:
    if not token:
        return 0, ""
    skip, sep, ec2_token = token.partition(":")
    if not sep or not skip.isdigit():
        raise InvalidArgument(f"starting token {shown(token)} was not issued by this plugin")
    return int(skip), ec2_token
