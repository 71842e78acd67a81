"""CSI's rules for what a request may carry: banned characters and size limits, checked before the core.

The spec ("Size Limits") caps a string field at 128 bytes and a ``map<string, string>`` at 4 KiB unless
the field says otherwise, and bans control characters in names. zonal's choice, field by field
(every refusal is INVALID_ARGUMENT naming the field and quoting at most ~100 characters of it):

=========================================================  =============================================
field                                                      rule
=========================================================  =============================================
any string of any request (``csi_secret`` fields aside)    no NUL: nothing downstream (EC2's XML, the
                                                           kernel, C strings) can carry it
``name`` (CreateVolume, CreateSnapshot)                    at most 128 bytes; none of the characters the
                                                           spec bans (U+0000–U+0008, U+000B, U+000C,
                                                           U+000E–U+001F, U+007F–U+009F), nor CR, U+FFFE
                                                           or U+FFFF (EC2 answers in XML, which cannot
                                                           carry them back: the name would not be found)
``parameters``, ``mutable_parameters``,                    keys and values together at most 4 KiB; no
``volume_context``, topology segments                      key or value with a character refused in names
``node_id``                                                at most 256 bytes (the spec's own limit)
``fs_type``, ``volume_mount_group``; ``mount_flags``       128 bytes each; 4 KiB together
volume, snapshot and source ids, ``starting_token``        no limit here: an id the plugin could not have
                                                           issued does not exist (NOT_FOUND, OK for a
                                                           delete, ABORTED for a token), whatever its
                                                           length; it never reaches EC2
``secrets``                                                not checked: never used, never logged
=========================================================  =============================================

Pure functions over protobuf messages and model values; no I/O, no gRPC status (the interceptor and
the servicers call them, the one error table maps :class:`~provisioner.errors.InvalidArgument`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from provisioner.csi._proto import csi_pb2
from provisioner.errors import InvalidArgument, shown
from provisioner.model import VolumeCapability

# CSI "Size Limits": string fields 128 bytes, map<string, string> fields 4 KiB.
STRING_LIMIT = 128
MAP_LIMIT = 4096
# CSI NodeGetInfoResponse.node_id: "The size of this field SHALL NOT exceed 256 bytes".
NODE_ID_LIMIT = 256
# CSI MountVolume.mount_flags: "The total size of this repeated field SHALL NOT exceed 4 KiB".
MOUNT_FLAGS_LIMIT = 4096

# CSI CreateVolumeRequest.name / CreateSnapshotRequest.name: U+0000-U+0008, U+000B, U+000C,
# U+000E-U+001F, U+007F-U+009F are banned. CR (U+000D), U+FFFE and U+FFFF are refused too: EC2
# answers in XML, which turns CR into LF and cannot carry the other two, so the name would not be
# found again by its tag.
_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")


class _Kind:
    STRING, STRINGS, STRING_MAP, MESSAGE, MESSAGES, MESSAGE_MAP = range(6)


_Plan = tuple[tuple[str, int], ...]
_plans: dict[str, _Plan] = {}


def is_secret(field: FieldDescriptor) -> bool:
    """The field is marked ``csi_secret`` in the CSI proto: never checked, never logged."""
    opts: Any = field.GetOptions()
    ext: Any = csi_pb2.csi_secret
    return bool(opts.HasExtension(ext) and opts.Extensions[ext])


def _plan(desc: Any) -> _Plan:
    """Which fields of a message type hold strings, directly or below (secrets left out); built once."""
    plan = _plans.get(desc.full_name)
    if plan is not None:
        return plan
    _plans[desc.full_name] = ()  # a recursive message type stops here while its plan is built
    steps: list[tuple[str, int]] = []
    for field in desc.fields:
        if is_secret(field):
            continue
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            steps.append((field.name, _Kind.STRINGS if repeated else _Kind.STRING))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            entry = field.message_type
            if entry.GetOptions().map_entry:
                value = entry.fields_by_name["value"]
                if value.type == FieldDescriptor.TYPE_STRING:
                    steps.append((field.name, _Kind.STRING_MAP))
                elif (
                    value.type == FieldDescriptor.TYPE_MESSAGE
                    and value.message_type is not None
                    and _plan(value.message_type)
                ):
                    steps.append((field.name, _Kind.MESSAGE_MAP))
            elif _plan(entry) or entry.full_name == desc.full_name:
                steps.append((field.name, _Kind.MESSAGES if repeated else _Kind.MESSAGE))
    plan = _plans[desc.full_name] = tuple(steps)
    return plan


def refuse_nul(msg: Message, path: str = "") -> None:
    """Raise InvalidArgument naming the first string field (at any depth, secrets aside) holding NUL.

    CSI: an invalid field in the request → INVALID_ARGUMENT. Called for every CSI request by the
    interceptor, so a message type without strings costs one dictionary lookup."""
    for name, kind in _plan(msg.DESCRIPTOR):
        value = getattr(msg, name)
        where = f"{path}{name}"
        if kind == _Kind.STRING:
            if "\x00" in value:
                raise InvalidArgument(f"{where} contains a NUL character: {shown(value)}")
        elif kind == _Kind.STRINGS:
            for i, item in enumerate(value):
                if "\x00" in item:
                    raise InvalidArgument(f"{where}[{i}] contains a NUL character: {shown(item)}")
        elif kind == _Kind.STRING_MAP:
            for key, item in value.items():
                if "\x00" in key or "\x00" in item:
                    raise InvalidArgument(f"{where} entry {shown(key)} contains a NUL character")
        elif kind == _Kind.MESSAGE:
            if msg.HasField(name):
                refuse_nul(value, f"{where}.")
        elif kind == _Kind.MESSAGES:
            for i, item in enumerate(value):
                refuse_nul(item, f"{where}[{i}].")
        else:
            for key, item in value.items():
                if "\x00" in key:
                    raise InvalidArgument(f"{where} key {shown(key)} contains a NUL character")
                refuse_nul(item, f"{where}[{key!r}].")


def _size(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _refused_character(value: str) -> str | None:
    found = _REFUSED.search(value)
    return None if found is None else f"U+{ord(found.group()):04X} at position {found.start()}"


def check_name(value: str, field: str) -> str:
    """A CreateVolume/CreateSnapshot name within CSI's limits (see the module docstring); returns it."""
    size = _size(value)
    if size > STRING_LIMIT:
        # CSI Size Limits: a string field is at most 128 bytes.
        raise InvalidArgument(f"{field} is {size} bytes; CSI allows at most {STRING_LIMIT}: {shown(value)}")
    bad = _refused_character(value)
    if bad is not None:
        # CSI: names must not contain control characters (U+0000-U+001F but TAB/LF/CR, U+007F-U+009F).
        raise InvalidArgument(f"{field} {shown(value)} contains the control character {bad}")
    return value


def check_map(values: Mapping[str, str], field: str) -> dict[str, str]:
    """A ``map<string, string>`` within CSI's 4 KiB, with no refused character; returns a plain dict."""
    total = 0
    for key, value in values.items():
        total += _size(key) + _size(value)
        for part, what in ((key, "key"), (value, "value")):
            bad = _refused_character(part)
            if bad is not None:
                raise InvalidArgument(
                    f"{field}: the {what} of entry {shown(key)} contains the control character {bad}"
                )
    if total > MAP_LIMIT:
        # CSI Size Limits: a map<string, string> field is at most 4 KiB.
        raise InvalidArgument(f"{field} holds {total} bytes; CSI allows at most {MAP_LIMIT}")
    return dict(values)


def check_segments(segments: Sequence[Mapping[str, str]], field: str) -> None:
    """Every topology segment within the map rules."""
    for i, segment in enumerate(segments):
        check_map(segment, f"{field}[{i}]")


def check_node_id(value: str) -> str:
    """CSI: node_id is at most 256 bytes (it overrides the general 128-byte limit); returns it."""
    size = _size(value)
    if size > NODE_ID_LIMIT:
        raise InvalidArgument(f"node_id is {size} bytes; CSI allows at most {NODE_ID_LIMIT}: {shown(value)}")
    return value


def check_capability(capability: VolumeCapability, field: str) -> VolumeCapability:
    """fs_type and volume_mount_group at most 128 bytes, mount_flags at most 4 KiB together; returns it."""
    for name in ("fs_type", "volume_mount_group"):
        value: str = getattr(capability, name)
        size = _size(value)
        if size > STRING_LIMIT:
            raise InvalidArgument(
                f"{field}.mount.{name} is {size} bytes; CSI allows at most {STRING_LIMIT}: {shown(value)}"
            )
    total = sum(_size(flag) for flag in capability.mount_flags)
    if total > MOUNT_FLAGS_LIMIT:
        # CSI: "The total size of this repeated field SHALL NOT exceed 4 KiB".
        raise InvalidArgument(
            f"{field}.mount.mount_flags hold {total} bytes; CSI allows at most {MOUNT_FLAGS_LIMIT}"
        )
    return capability
