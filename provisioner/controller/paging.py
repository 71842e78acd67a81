"""How ListVolumes and ListSnapshots page: this driver's objects sorted by id, the token being the id of
the next entry.

So any ``max_entries`` works (EC2's own MaxResults must be ≥ 5) and a token survives the deletion of the
object it names. Pure functions over model values; the callers read EC2 and filter what is theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from provisioner.errors import InvalidArgument, InvalidStartingToken, shown
from provisioner.model import Page

T = TypeVar("T")

EC2_PAGE = 1000  # objects per EC2 call while reading a whole listing


def check_list_request(max_entries: int, starting_token: str, is_id: Callable[[str], bool]) -> None:
    if max_entries < 0:
        raise InvalidArgument("max_entries must not be negative")
    # CSI: a starting_token the plugin did not issue → ABORTED.
    if starting_token and not is_id(starting_token):
        raise InvalidStartingToken(f"starting_token {shown(starting_token)} was not issued by this plugin")


def read_all(read: Callable[[str], Page[T]]) -> list[T]:
    """Every item of a listing, following the cloud's next tokens from the first page."""
    items: list[T] = []
    token = ""
    while True:
        page = read(token)
        items.extend(page.items)
        token = page.next_token
        if not token:
            return items


def page_by_id(
    items: Iterable[T], id_of: Callable[[T], str], max_entries: int, starting_token: str
) -> Page[T]:
    """The page of ``items`` (sorted by id) that starts at ``starting_token``, at most ``max_entries``."""
    ordered = sorted(items, key=id_of)
    if starting_token:
        ordered = [i for i in ordered if id_of(i) >= starting_token]
    if max_entries and len(ordered) > max_entries:
        return Page(tuple(ordered[:max_entries]), id_of(ordered[max_entries]))
    return Page(tuple(ordered))
