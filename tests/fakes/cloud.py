"""A stateful in-memory EC2 implementing :class:`provisioner.ports.cloud.Cloud`.

The test double for every controller-core test: volumes move ``creating`` → ``available`` after a
configurable number of ``get_volume`` polls, attachments ``attaching`` → ``attached`` and
``detaching`` → gone the same way; ClientToken idempotency, zone validation and the attach rules
follow EC2 (the ClientToken rule is :mod:`provisioner.embedded.idempotency`, shared with the simulator;
``tests/contracts/test_cloud.py`` runs the same scenarios over both). Snapshots move ``pending`` →
``completed`` after ``snapshot_polls`` reads; volume modifications are :mod:`tests.fakes.cloud_modify`.
CopyVolumes exists unless ``supports_copy`` is false. Errors can be queued per method
(:meth:`FakeCloud.fail`), calls are counted (:attr:`FakeCloud.calls`), and a method can be held
mid-call (:meth:`FakeCloud.hold`) to test concurrency. It must stay small and faithful; it does not
model throttling or eventual consistency.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from provisioner import errors
from provisioner.embedded.idempotency import SeenTokens, TokenMismatch
from provisioner.model import (
    TAG_SNAPSHOT_NAME,
    TAG_VOLUME_NAME,
    Attachment,
    Instance,
    Page,
    Snapshot,
    Volume,
    VolumeSpec,
    VolumeState,
    Zone,
    is_instance_id,
    is_snapshot_id,
    is_volume_id,
)
from provisioner.ports.clock import Clock
from tests.fakes.cloud_extras import FakeCloudExtras
from tests.fakes.cloud_modify import FakeModifications

DEFAULT_ZONES = (
    Zone("us-east-1a", "use1-az1"),
    Zone("us-east-1b", "use1-az2"),
    Zone("us-east-1c", "use1-az4"),
)
T = TypeVar("T")


@dataclass
class _Vol:
    volume: Volume
    polls: int = 0  # get_volume polls while creating
    ready_at: float | None = None  # with creating_seconds: when it leaves creating, on the clock
    outcome: VolumeState = VolumeState.AVAILABLE
    attach_polls: dict[str, int] = field(default_factory=dict)  # instance → polls seen in a transition


@dataclass
class _Inst:
    instance: Instance
    limit: int


@dataclass
class Hold:
    """Pause one method: ``entered`` is set when a call arrives, which then waits for ``release``."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class FakeCloud(FakeCloudExtras, FakeModifications):
    def __init__(
        self,
        zones: Sequence[Zone] = DEFAULT_ZONES,
        region: str = "us-east-1",
        creating_polls: int = 1,
        attach_polls: int = 1,
        detach_polls: int = 1,
        snapshot_polls: int = 0,
        modify_polls: int = 0,
        clock: Clock | None = None,
    ) -> None:
        FakeCloudExtras.__init__(self)
        FakeModifications.__init__(self)
        self.region = region
        self.zones = tuple(zones)
        self.creating_polls = creating_polls
        self.attach_polls = attach_polls
        self.detach_polls = detach_polls
        self.snapshot_polls = snapshot_polls
        self.modify_polls = modify_polls
        self.clock = clock
        # False: CopyVolumes answers Unimplemented, as on endpoints that lack it.
        self.supports_copy = True
        self.copied: list[tuple[str, VolumeSpec, str]] = []  # (source, spec, token) per copy call
        self.snapshot_requests: list[tuple[str, dict[str, str], str]] = []  # (volume, tags, outpost)
        self._snap_polls: dict[str, int] = {}
        # Given (and a clock): a new volume stays creating this many seconds (per spec) instead of
        # creating_polls polls.
        self.creating_seconds: Callable[[VolumeSpec], float] | None = None
        # The next created volumes end in this state instead of available (e.g. VolumeState.ERROR).
        self.create_outcome = VolumeState.AVAILABLE
        # Attachments never leave "attaching" (the EBS "stuck attaching" failure).
        self.stuck_attaching = False
        self.volumes: dict[str, _Vol] = {}
        self.instances: dict[str, _Inst] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.deleted: list[str] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.created_with: list[tuple[VolumeSpec, str, str]] = []  # (spec, zone, token) per create call
        # EC2's ClientToken rule, shared with the simulator: (zone, volume id) by token and spec.
        self._tokens: SeenTokens[VolumeSpec, tuple[str, str]] = SeenTokens()
        self._errors: dict[str, collections.deque[Exception]] = collections.defaultdict(collections.deque)
        self._holds: dict[str, Hold] = {}
        self._ids = itertools.count(0x10000000)
        self._lock = threading.RLock()

    # Test controls.

    def fail(self, method: str, *exceptions: Exception) -> None:
        """Queue exceptions that the next calls of ``method`` raise, one per call."""
        self._errors[method].extend(exceptions)

    def hold(self, method: str) -> Hold:
        """Make the next call of ``method`` wait until ``Hold.release`` is set."""
        h = Hold()
        self._holds[method] = h
        return h

    def add_instance(
        self,
        instance_id: str,
        zone: str,
        block_devices: Mapping[str, str] | None = None,
        attachment_limit: int = 27,
    ) -> Instance:
        inst = Instance(
            instance_id, zone, "m5.large", "running", dict(block_devices or {"/dev/xvda": "vol-root"})
        )
        self.instances[instance_id] = _Inst(inst, attachment_limit)
        return inst

    def add_volume(self, volume: Volume) -> Volume:
        """Put a volume in place directly (e.g. a foreign one, or one already in some state)."""
        self.volumes[volume.volume_id] = _Vol(volume)
        return volume

    def new_volume_id(self) -> str:
        return f"vol-{next(self._ids):017x}"

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        h = self._holds.pop(method, None)
        if h is not None:
            h.entered.set()
            h.release.wait(10)
        queue = self._errors.get(method)
        if queue:
            raise queue.popleft()

    # Cloud protocol.

    def check_access(self) -> None:
        self._enter("check_access")

    def availability_zones(self) -> Sequence[Zone]:
        self._enter("availability_zones")
        return self.zones

    def create_volume(self, spec: VolumeSpec, zone: str, client_token: str) -> Volume:
        self._enter("create_volume")
        with self._lock:
            self.created_with.append((spec, zone, client_token))
            if zone not in {z.name for z in self.zones}:
                raise errors.InvalidArgument(f"Invalid availability zone: [{zone}]")
            if spec.snapshot_id:
                snap = self.snapshots.get(spec.snapshot_id)
                if snap is None:
                    raise errors.NotFound(f"InvalidSnapshot.NotFound: snapshot {spec.snapshot_id}")
                if snap.state != "completed":
                    raise errors.FailedPrecondition(f"IncorrectState: snapshot {spec.snapshot_id} is pending")
                if spec.size_gib < snap.size_gib:
                    raise errors.InvalidArgument(
                        f"InvalidParameterValue: size {spec.size_gib} is below snapshot size {snap.size_gib}"
                    )
            try:
                known = self._tokens.replay(client_token, spec)  # EC2 leaves the zone out of the comparison
            except TokenMismatch as e:
                raise errors.AlreadyExists(f"IdempotentParameterMismatch: {e}") from e
            if known is not None:
                entry = self.volumes.get(known[1])
                if entry is None:  # deleted meanwhile: EC2 still answers with the old volume
                    return self._deleted_stub(spec, *known)
                return entry.volume
            volume = Volume(
                volume_id=self.new_volume_id(),
                size_gib=spec.size_gib,
                zone=zone,
                state=VolumeState.CREATING,
                volume_type=spec.volume_type,
                iops=spec.iops if spec.iops is not None else (3000 if spec.volume_type == "gp3" else None),
                throughput=spec.throughput
                if spec.throughput is not None
                else (125 if spec.volume_type == "gp3" else None),
                encrypted=spec.encrypted,
                kms_key_id=f"arn:aws:kms:{self.region}:123456789012:key/{spec.kms_key_id}"
                if spec.kms_key_id
                else "",
                multi_attach=spec.multi_attach,
                snapshot_id=spec.snapshot_id,
                tags={**spec.tags, TAG_VOLUME_NAME: spec.name},  # as the EC2 adapter writes them
            )
            entry = _Vol(volume, outcome=self.create_outcome)
            if self.creating_seconds is not None and self.clock is not None:
                entry.ready_at = self.clock.monotonic() + self.creating_seconds(spec)
            self.volumes[volume.volume_id] = entry
            self._tokens.record(client_token, spec, (zone, volume.volume_id))
            return volume

    def _deleted_stub(self, spec: VolumeSpec, zone: str, volume_id: str) -> Volume:
        return Volume(
            volume_id, spec.size_gib, zone, VolumeState.DELETED, spec.volume_type, tags=dict(spec.tags)
        )

    def get_volume(self, volume_id: str) -> Volume:
        self._enter("get_volume")
        with self._lock:
            entry = self._volume(volume_id)
            self._advance(entry)
            return entry.volume

    def _volume(self, volume_id: str) -> _Vol:
        entry = self.volumes.get(volume_id) if is_volume_id(volume_id) else None
        if entry is None:
            raise errors.NotFound(f"volume {volume_id} not found")
        return entry

    def _advance(self, entry: _Vol) -> None:
        """One poll's worth of progress for every pending transition of the volume."""
        v = entry.volume
        if v.state is VolumeState.CREATING:
            entry.polls += 1
            if entry.ready_at is not None and self.clock is not None:
                if self.clock.monotonic() >= entry.ready_at:
                    v = dataclasses.replace(v, state=entry.outcome)
            elif entry.polls >= self.creating_polls:
                v = dataclasses.replace(v, state=entry.outcome)
        attachments = []
        for a in v.attachments:
            if a.state == "attaching" and not self.stuck_attaching:
                n = entry.attach_polls[a.instance_id] = entry.attach_polls.get(a.instance_id, 0) + 1
                if n >= self.attach_polls:
                    a = dataclasses.replace(a, state="attached")
                    entry.attach_polls.pop(a.instance_id)
            elif a.state == "detaching":
                n = entry.attach_polls[a.instance_id] = entry.attach_polls.get(a.instance_id, 0) + 1
                if n >= self.detach_polls:
                    entry.attach_polls.pop(a.instance_id)
                    self._unmap(a)
                    continue
            attachments.append(a)
        v = dataclasses.replace(v, attachments=tuple(attachments))
        if v.state in (VolumeState.AVAILABLE, VolumeState.IN_USE):
            v = dataclasses.replace(v, state=VolumeState.IN_USE if attachments else VolumeState.AVAILABLE)
        entry.volume = v

    def _unmap(self, a: Attachment) -> None:
        inst = self.instances.get(a.instance_id)
        if inst is not None:
            devices = {d: vid for d, vid in inst.instance.block_devices.items() if d != a.device}
            inst.instance = dataclasses.replace(inst.instance, block_devices=devices)

    def describe_volumes(self, volume_ids: Iterable[str]) -> dict[str, Volume]:
        self._enter("describe_volumes")
        with self._lock:
            found: dict[str, Volume] = {}
            for volume_id in volume_ids:
                entry = self.volumes.get(volume_id)
                if entry is not None:
                    self._advance(entry)
                    found[volume_id] = entry.volume
            return found

    def find_volume_by_name(self, name: str) -> Volume | None:
        self._enter("find_volume_by_name")
        with self._lock:
            for entry in self.volumes.values():  # insertion order = creation order, oldest first
                if entry.volume.tags.get(TAG_VOLUME_NAME) == name:
                    return entry.volume
            return None

    def delete_volume(self, volume_id: str) -> None:
        self._enter("delete_volume")
        with self._lock:
            entry = self._volume(volume_id)
            if entry.volume.attachments:
                raise errors.FailedPrecondition(f"VolumeInUse: volume {volume_id} is attached")
            del self.volumes[volume_id]
            self.deleted.append(volume_id)

    def list_volumes(self, tag_filters: Mapping[str, str], max_results: int, next_token: str) -> Page[Volume]:
        self._enter("list_volumes")
        with self._lock:
            matching = [
                e.volume
                for e in self.volumes.values()
                if all(e.volume.tags.get(k) == v for k, v in tag_filters.items())
            ]
            return _page(matching, max_results, next_token, "vtok-")

    def get_instance(self, instance_id: str) -> Instance:
        self._enter("get_instance")
        with self._lock:
            return self._instance(instance_id).instance

    def _instance(self, instance_id: str) -> _Inst:
        inst = self.instances.get(instance_id) if is_instance_id(instance_id) else None
        if inst is None:
            raise errors.NotFound(f"instance {instance_id} not found")
        return inst

    def describe_instances(self, instance_ids: Iterable[str]) -> dict[str, Instance]:
        self._enter("describe_instances")
        with self._lock:
            return {i: self.instances[i].instance for i in instance_ids if i in self.instances}

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        self._enter("attach_volume")
        with self._lock:
            entry = self._volume(volume_id)
            inst = self._instance(instance_id)
            v = entry.volume
            if v.zone != inst.instance.zone:
                raise errors.FailedPrecondition(
                    f"volume {volume_id} is in {v.zone} but instance {instance_id} is in {inst.instance.zone}"
                )
            if v.state not in (VolumeState.AVAILABLE, VolumeState.IN_USE):
                raise errors.FailedPrecondition(f"IncorrectState: volume {volume_id} is {v.state.value}")
            if any(a.instance_id == instance_id for a in v.attachments):
                raise errors.FailedPrecondition(
                    f"VolumeInUse: {volume_id} is already attached to {instance_id}"
                )
            if v.attachments and not v.multi_attach:
                raise errors.FailedPrecondition(f"VolumeInUse: {volume_id} is attached to another instance")
            if device in inst.instance.block_devices:
                raise errors.FailedPrecondition(f"InvalidParameterValue: device {device} is already in use")
            if len(inst.instance.block_devices) >= inst.limit:
                raise errors.ResourceExhausted(f"AttachmentLimitExceeded: instance {instance_id}")
            attachment = Attachment(volume_id, instance_id, device, "attaching")
            entry.volume = dataclasses.replace(v, attachments=(*v.attachments, attachment))
            devices = {**inst.instance.block_devices, device: volume_id}
            inst.instance = dataclasses.replace(inst.instance, block_devices=devices)

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        self._enter("detach_volume")
        with self._lock:
            entry = self._volume(volume_id)
            v = entry.volume
            found = [a for a in v.attachments if a.instance_id == instance_id]
            if not found:
                raise errors.NotFound(f"IncorrectState: volume {volume_id} is not attached to {instance_id}")
            others = tuple(a for a in v.attachments if a.instance_id != instance_id)
            detaching = dataclasses.replace(found[0], state="detaching")
            entry.attach_polls.pop(instance_id, None)
            entry.volume = dataclasses.replace(v, attachments=(*others, detaching))

    def copy_volume(self, source_volume_id: str, spec: VolumeSpec, client_token: str) -> Volume:
        self._enter("copy_volume")
        if not self.supports_copy:
            raise errors.Unimplemented("InvalidAction: CopyVolumes is not available")
        with self._lock:
            source = self._volume(source_volume_id).volume
            self.copied.append((source_volume_id, spec, client_token))
            if spec.size_gib < source.size_gib:
                raise errors.InvalidArgument(f"InvalidParameterValue: size below {source.size_gib} GiB")
            return self.create_volume(spec, source.zone, client_token)

    def _now(self) -> float:
        return self.clock.time() if self.clock is not None else float(len(self.snapshots))

    def create_snapshot(
        self, volume_id: str, tags: Mapping[str, str], description: str, outpost_arn: str = ""
    ) -> Snapshot:
        self._enter("create_snapshot")
        with self._lock:
            self.snapshot_requests.append((volume_id, dict(tags), outpost_arn))
            v = self._volume(volume_id).volume
            state = "pending" if self.snapshot_polls > 0 else "completed"
            snap = Snapshot(
                f"snap-{next(self._ids):017x}",
                volume_id,
                v.size_gib,
                state,
                self._now(),
                dict(tags),
                progress=0 if self.snapshot_polls > 0 else 100,
            )
            self.snapshots[snap.snapshot_id] = snap
            return snap

    def _read_snapshot(self, snap: Snapshot) -> Snapshot:
        """One read's worth of progress of a pending snapshot."""
        if snap.state != "pending":
            return snap
        n = self._snap_polls[snap.snapshot_id] = self._snap_polls.get(snap.snapshot_id, 0) + 1
        if n >= self.snapshot_polls:
            snap = dataclasses.replace(snap, state="completed", progress=100)
        else:
            snap = dataclasses.replace(snap, progress=100 * n // self.snapshot_polls)
        self.snapshots[snap.snapshot_id] = snap
        return snap

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        self._enter("get_snapshot")
        with self._lock:
            snap = self.snapshots.get(snapshot_id) if is_snapshot_id(snapshot_id) else None
            if snap is None:
                raise errors.NotFound(f"snapshot {snapshot_id} not found")
            return self._read_snapshot(snap)

    def find_snapshot_by_name(self, name: str) -> Snapshot | None:
        self._enter("find_snapshot_by_name")
        with self._lock:
            found = next((s for s in self.snapshots.values() if s.tags.get(TAG_SNAPSHOT_NAME) == name), None)
            return None if found is None else self._read_snapshot(found)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._enter("delete_snapshot")
        with self._lock:
            if snapshot_id not in self.snapshots:
                raise errors.NotFound(f"snapshot {snapshot_id} not found")
            self.check_unlocked(snapshot_id)
            del self.snapshots[snapshot_id]

    def list_snapshots(
        self, tag_filters: Mapping[str, str], source_volume_id: str, max_results: int, next_token: str
    ) -> Page[Snapshot]:
        self._enter("list_snapshots")
        with self._lock:
            matching = [
                self._read_snapshot(s)
                for s in list(self.snapshots.values())
                if all(s.tags.get(k) == v for k, v in tag_filters.items())
                and (not source_volume_id or s.source_volume_id == source_volume_id)
            ]
            return _page(matching, max_results, next_token, "stok-")

    def create_tags(self, resource_id: str, tags: Mapping[str, str]) -> None:
        self._enter("create_tags")
        with self._lock:
            if resource_id in self.volumes:
                entry = self.volumes[resource_id]
                entry.volume = dataclasses.replace(entry.volume, tags={**entry.volume.tags, **tags})
            elif resource_id in self.snapshots:
                s = self.snapshots[resource_id]
                self.snapshots[resource_id] = dataclasses.replace(s, tags={**s.tags, **tags})
            else:
                raise errors.NotFound(f"resource {resource_id} not found")

    def delete_tags(self, resource_id: str, keys: Sequence[str]) -> None:
        self._enter("delete_tags")
        with self._lock:
            if resource_id in self.volumes:
                entry = self.volumes[resource_id]
                kept = {k: v for k, v in entry.volume.tags.items() if k not in keys}
                entry.volume = dataclasses.replace(entry.volume, tags=kept)
            elif resource_id in self.snapshots:
                s = self.snapshots[resource_id]
                self.snapshots[resource_id] = dataclasses.replace(
                    s, tags={k: v for k, v in s.tags.items() if k not in keys}
                )
            else:
                raise errors.NotFound(f"resource {resource_id} not found")


def _page(items: list[T], max_results: int, next_token: str, prefix: str) -> Page[T]:
    """Slice ``items`` like EC2 pages: tokens are ``<prefix><offset>``; anything else is rejected."""
    start = 0
    if next_token:
        if not next_token.startswith(prefix) or not next_token[len(prefix) :].isdigit():
            raise errors.InvalidArgument(f"InvalidParameterValue: bad NextToken {next_token!r}")
        start = int(next_token[len(prefix) :])
        if start > len(items):
            raise errors.InvalidArgument(f"InvalidParameterValue: bad NextToken {next_token!r}")
    end = len(items) if max_results <= 0 else start + max_results
    token = f"{prefix}{end}" if end < len(items) else ""
    return Page(tuple(items[start:end]), token)
