"""What moto lacks inside one EC2 backend: lifecycles on a clock, ClientToken idempotency, zone and
device checks, and the events (:mod:`.events`) the embedded cloud's block backer needs.

moto answers every volume ``available`` and every attachment ``attached`` at once, accepts unknown
zones, attaches across zones and drops an instance's block-device mapping at DetachVolume (kept here
while it detaches, :mod:`.mappings`). :class:`Graft` wraps the methods of ONE backend object (instance
attributes, never moto's classes, so other moto users in the process are untouched) and re-classes
the objects it creates into the ``Sim*`` subclasses below, whose ``status`` is computed from the
injected clock each time moto serialises them. No background thread advances anything.

The wrappers act only when the request being served is the matching API call (see
:func:`request_context`); moto's internal uses (RunInstances creating a root volume, termination
detaching it) pass straight through. This module must not parse HTTP, throttle or sleep; callers hold
the simulator's lock around every backend call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.ec2.exceptions import EC2ClientError, InvalidVolumeAttachmentError, MissingParameterError
from moto.ec2.models import EC2Backend
from moto.ec2.models.elastic_block_store import Snapshot, Volume, VolumeAttachment, VolumeModification

from provisioner.embedded.ec2 import events as ev
from provisioner.embedded.ec2 import mappings
from provisioner.embedded.ec2.config import Delays
from provisioner.embedded.ec2.faults import Chance
from provisioner.embedded.idempotency import SeenTokens, TokenMismatch
from provisioner.ports.clock import Clock


@dataclass
class RequestContext:
    """The API call being served: its action and, for idempotent calls, token and parameter digest."""

    action: str
    client_token: str | None = None
    signature: tuple[tuple[str, str], ...] = ()
    events: list[ev.HookEvent] = field(default_factory=list)


_local = threading.local()


def current() -> RequestContext | None:
    ctx: RequestContext | None = getattr(_local, "ctx", None)
    return ctx


@contextmanager
def request_context(ctx: RequestContext) -> Iterator[RequestContext]:
    previous = current()
    _local.ctx = ctx
    try:
        yield ctx
    finally:
        _local.ctx = previous


def _acting(action: str) -> RequestContext | None:
    ctx = current()
    return ctx if ctx is not None and ctx.action == action else None


@dataclass(frozen=True)
class Lifecycle:
    """What every simulated object needs to know its state: the clock and the delays."""

    clock: Clock
    delays: Delays
    chance: Chance
    zones: tuple[str, ...]

    def now(self) -> float:
        return self.clock.monotonic()

    def stamp(self) -> datetime:
        """Now on the clock's epoch scale, as moto keeps its times (naive UTC): CreateTime and StartTime
        follow the injected clock too, so "oldest first" orders what a fake clock created apart."""
        return datetime.fromtimestamp(self.clock.time(), UTC).replace(tzinfo=None)


# --- moto objects whose state follows the clock ------------------------------------------------------


class SimVolume(Volume):
    """``creating`` until ready, then ``available``/``in-use`` (or ``error`` when doomed)."""

    _zonal_life: Lifecycle
    _zonal_ready_at: float
    _zonal_fails: bool
    _zonal_deleted: bool
    _zonal_attachment: VolumeAttachment | None

    @property
    def attachment(self) -> VolumeAttachment | None:
        att = self._zonal_attachment
        if isinstance(att, SimAttachment) and att.gone():
            self._zonal_attachment = None  # the detach finished: the volume is free again
            return None
        return att

    @attachment.setter
    def attachment(self, value: VolumeAttachment | None) -> None:
        self._zonal_attachment = value

    @property
    def status(self) -> str:
        if self._zonal_deleted:
            return "deleted"  # only a ClientToken replay still sees a deleted volume
        if self._zonal_life.now() < self._zonal_ready_at:
            return "creating"
        if self._zonal_fails:
            return "error"
        return "in-use" if self.attachment is not None else "available"


class SimAttachment(VolumeAttachment):
    """``attaching`` → ``attached``; after DetachVolume ``detaching`` → ``detached``."""

    _zonal_life: Lifecycle
    _zonal_attached_at: float
    _zonal_detached_at: float | None

    @property
    def status(self) -> str:
        now = self._zonal_life.now()
        if self._zonal_detached_at is not None:
            return "detaching" if now < self._zonal_detached_at else "detached"
        return "attaching" if now < self._zonal_attached_at else "attached"

    @status.setter
    def status(self, value: str) -> None:
        """moto writes ``detached`` when it detaches; the clock decides here, so the write is dropped."""

    def detaching(self) -> bool:
        return self._zonal_detached_at is not None and self._zonal_life.now() < self._zonal_detached_at

    def gone(self) -> bool:
        return self._zonal_detached_at is not None and self._zonal_life.now() >= self._zonal_detached_at


class SimSnapshot(Snapshot):
    """``pending`` → ``completed``, with a progress that grows with time."""

    _zonal_life: Lifecycle
    _zonal_started_at: float
    _zonal_ready_at: float

    @property
    def status(self) -> str:
        return "pending" if self._zonal_life.now() < self._zonal_ready_at else "completed"

    @status.setter
    def status(self, value: str) -> None:
        """Dropped: the clock decides (moto sets ``completed`` at creation)."""

    @property
    def progress(self) -> str:
        span = self._zonal_ready_at - self._zonal_started_at
        done = 1.0 if span <= 0 else (self._zonal_life.now() - self._zonal_started_at) / span
        return f"{int(max(0.0, min(1.0, done)) * 100)}%"


class SimModification(VolumeModification):
    """``modifying`` → ``optimizing`` → ``completed``."""

    _zonal_life: Lifecycle
    _zonal_started_at: float

    def _elapsed(self) -> float:
        return self._zonal_life.now() - self._zonal_started_at

    @property
    def modification_state(self) -> str:
        d = self._zonal_life.delays
        elapsed = self._elapsed()
        if elapsed < d.modify_modifying:
            return "modifying"
        if elapsed < d.modify_modifying + d.modify_optimizing:
            return "optimizing"
        return "completed"

    @property
    def progress(self) -> int:
        d = self._zonal_life.delays
        total = d.modify_modifying + d.modify_optimizing
        return 100 if total <= 0 else int(max(0.0, min(1.0, self._elapsed() / total)) * 100)

    def busy_until(self) -> float:
        d = self._zonal_life.delays
        return self._zonal_started_at + d.modify_modifying + d.modify_optimizing


def _adopt_volume(volume: Volume, life: Lifecycle, ready_at: float, fails: bool) -> SimVolume:
    attachment = volume.__dict__.pop("attachment", None)
    volume.__class__ = SimVolume  # type: ignore[type-abstract]
    sim: SimVolume = volume  # type: ignore[assignment]
    sim._zonal_life = life
    sim._zonal_ready_at = ready_at
    sim._zonal_fails = fails
    sim._zonal_deleted = False
    sim._zonal_attachment = attachment
    sim.create_time = life.stamp()
    return sim


def _adopt_attachment(att: VolumeAttachment, life: Lifecycle, attached_at: float) -> SimAttachment:
    if isinstance(att, SimAttachment):
        return att
    att.__dict__.pop("status", None)
    att.__class__ = SimAttachment  # type: ignore[type-abstract]
    sim: SimAttachment = att  # type: ignore[assignment]
    sim._zonal_life = life
    sim._zonal_attached_at = attached_at
    sim._zonal_detached_at = None
    return sim


class LeanEC2Backend(EC2Backend):
    """moto's EC2 backend without the 1,300 public AMIs it loads per account (0.4 s each time); the
    simulator never validates image ids."""

    def _load_amis(self) -> None:
        return None


_backends_lock = threading.Lock()


def backend_for(account_id: str, region: str) -> Any:
    """The moto EC2 backend of ``account_id`` in ``region``, created lean on first use."""
    from moto.ec2.models import ec2_backends

    with _backends_lock:
        accounts = ec2_backends[account_id]
        # Not `region in accounts`: moto answers True there for every region it could create.
        if region not in accounts.keys():  # noqa: SIM118
            accounts[region] = LeanEC2Backend(region, account_id=account_id)
        return accounts[region]


# --- the graft ----------------------------------------------------------------------------------------


def _error(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


class Graft:
    """Installed once per moto backend (one account, one region); keeps the ClientTokens seen there."""

    def __init__(self, backend: Any, life: Lifecycle) -> None:
        self.backend = backend
        self.life = life
        self.tokens: SeenTokens[tuple[tuple[str, str], ...], Volume] = SeenTokens()
        self.lingering = mappings.Lingering()
        self._create_volume = backend.create_volume
        self._attach_volume = backend.attach_volume
        self._detach_volume = backend.detach_volume
        self._delete_volume = backend.delete_volume
        self._modify_volume = backend.modify_volume
        self._create_snapshot = backend.create_snapshot
        self._delete_snapshot = backend.delete_snapshot
        backend.create_volume = self.create_volume
        backend.attach_volume = self.attach_volume
        backend.detach_volume = self.detach_volume
        backend.delete_volume = self.delete_volume
        backend.modify_volume = self.modify_volume
        backend.create_snapshot = self.create_snapshot
        backend.delete_snapshot = self.delete_snapshot
        # Only the configured zones exist in this backend (DescribeAvailabilityZones, RunInstances).
        region = backend.region_name
        known = backend.zones.get(region, [])
        backend.zones = {**backend.zones, region: [z for z in known if z.name in life.zones]}

    @classmethod
    def of(cls, backend: Any, life: Lifecycle) -> Graft:
        graft: Graft | None = backend.__dict__.get("_zonal_graft")
        if graft is None:
            graft = backend._zonal_graft = cls(backend, life)
        return graft

    def settle(self) -> None:
        """Before each request: mappings whose detach completed leave DescribeInstances."""
        self.lingering.settle()

    def create_volume(self, *args: Any, **kwargs: Any) -> Volume:
        ctx = _acting("CreateVolume")
        if ctx is None:  # a root volume of RunInstances: ready at once
            volume: Volume = self._create_volume(*args, **kwargs)
            return _adopt_volume(volume, self.life, self.life.now(), False)
        try:
            # EC2 idempotency: same token and parameters (zone aside) → the original volume.
            seen = self.tokens.replay(ctx.client_token, ctx.signature)
        except TokenMismatch as e:
            raise _error("IdempotentParameterMismatch", str(e)) from e
        if seen is not None:
            return seen
        zone = _arg(args, kwargs, 1, "zone_name")
        if not zone:
            raise MissingParameterError("AvailabilityZone")
        if zone not in self.life.zones:
            raise _error("InvalidZone.NotFound", f"The zone '{zone}' does not exist.")
        snapshot_id = _arg(args, kwargs, 2, "snapshot_id")
        size = _arg(args, kwargs, 0, "size")
        if snapshot_id and size is not None:
            minimum = int(self.backend.get_snapshot(snapshot_id).volume.size)
            if int(size) < minimum:  # EC2 refuses a volume smaller than its snapshot
                raise _error(
                    "InvalidParameterValue",
                    f"Volume of size {int(size)}GiB is smaller than snapshot '{snapshot_id}', "
                    f"expect size >= {minimum}GiB",
                )
        volume = self._create_volume(*args, **kwargs)
        delay = self.life.delays.volume_create
        sim = _adopt_volume(volume, self.life, self.life.now() + delay, self.life.chance.volume_fails())
        self.tokens.record(ctx.client_token, ctx.signature, sim)
        if snapshot_id:  # only a fresh volume: a ClientToken replay returned above
            ctx.events.append(ev.VolumeRestored(sim.id, str(snapshot_id), int(sim.size)))
        return sim

    def _device_taken(self, instance: Any, device: str) -> bool:
        if device in instance.block_device_mapping:
            return True
        for volume in list(self.backend.volumes.values()):  # includes attachments still detaching
            att = volume.attachment
            if att is not None and att.instance.id == instance.id and att.device == device:
                return True
        return False

    def attach_volume(self, *args: Any, **kwargs: Any) -> VolumeAttachment | None:
        ctx = _acting("AttachVolume")
        if ctx is None:
            result: VolumeAttachment | None = self._attach_volume(*args, **kwargs)
            return result
        volume_id = _arg(args, kwargs, 0, "volume_id")
        instance_id = _arg(args, kwargs, 1, "instance_id")
        device = _arg(args, kwargs, 2, "device_path")
        volume = self.backend.get_volume(volume_id)
        instance = self.backend.get_instance(instance_id)
        if volume.attachment is not None:
            raise _error("VolumeInUse", f"{volume_id} is already attached to an instance")
        if volume.status != "available":
            raise _error("IncorrectState", f"{volume_id} is not 'available'.")
        if volume.zone is None or volume.zone.name != instance.availability_zone:
            raise _error(
                "InvalidVolume.ZoneMismatch",
                f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'",
            )
        if self._device_taken(instance, device):
            # What EC2 answers for a device name in use on the instance, attaching, attached or still
            # detaching (not in the API reference; as EC2 returns it in hashicorp/terraform#19915,
            # mantl/mantl#819, kopeio/etcd-manager#323): 400 InvalidParameterValue "Invalid value
            # '/dev/sdf' for unixDevice. Attachment point /dev/sdf is already in use".
            raise _error(
                "InvalidParameterValue",
                f"Invalid value '{device}' for unixDevice. Attachment point {device} is already in use",
            )
        att = self._attach_volume(*args, **kwargs)
        if att is None:
            return None
        sim = _adopt_attachment(att, self.life, self.life.now() + self.life.delays.attach)
        mappings.follow(instance, device, sim)  # DescribeInstances: attaching, then attached
        ctx.events.append(ev.Attached(volume_id, instance_id, device, int(volume.size)))
        return sim

    def detach_volume(self, *args: Any, **kwargs: Any) -> VolumeAttachment:
        ctx = _acting("DetachVolume")
        if ctx is None:
            result: VolumeAttachment = self._detach_volume(*args, **kwargs)
            return result
        volume_id = _arg(args, kwargs, 0, "volume_id")
        instance_id = _arg(args, kwargs, 1, "instance_id")
        device = _arg(args, kwargs, 2, "device_path")
        volume = self.backend.get_volume(volume_id)
        att = volume.attachment
        if att is not None and instance_id and att.instance.id != instance_id:
            raise InvalidVolumeAttachmentError(volume_id, instance_id)
        if isinstance(att, SimAttachment) and att.detaching():
            return att  # already on its way out: answer the same attachment again
        block = att.instance.block_device_mapping.get(device or att.device) if att is not None else None
        old = self._detach_volume(volume_id, instance_id or (att.instance.id if att else None), device)
        ghost = _adopt_attachment(old, self.life, self.life.now())
        ghost._zonal_detached_at = self.life.now() + self.life.delays.detach
        if isinstance(volume, SimVolume) and not ghost.gone():
            volume.attachment = ghost  # EC2 keeps the volume in-use while it detaches
            if isinstance(block, mappings.SimBlockDevice):
                # ... and lists the mapping as detaching in DescribeInstances, its device name taken.
                self.lingering.keep(ghost.instance, ghost.device, block)
        ctx.events.append(ev.Detached(volume_id, ghost.instance.id))
        return ghost

    def delete_volume(self, *args: Any, **kwargs: Any) -> Volume:
        volume: Volume = self._delete_volume(*args, **kwargs)
        ctx = _acting("DeleteVolume")
        if ctx is not None:
            if isinstance(volume, SimVolume):
                volume._zonal_deleted = True
            ctx.events.append(ev.Deleted(volume.id))
        return volume

    def modify_volume(self, *args: Any, **kwargs: Any) -> Volume:
        ctx = _acting("ModifyVolume")
        if ctx is None:
            result: Volume = self._modify_volume(*args, **kwargs)
            return result
        volume_id = _arg(args, kwargs, 0, "volume_id")
        target_size = _arg(args, kwargs, 1, "target_size")
        volume = self.backend.get_volume(volume_id)
        status = volume.status
        if status not in ("available", "in-use"):
            raise _error(
                "IncorrectState", f"The volume '{volume_id}' is not in a modifiable state ({status})."
            )
        last = volume.modifications[-1] if volume.modifications else None
        if isinstance(last, SimModification):
            now = self.life.now()
            if now < last.busy_until():
                raise _error(
                    "IncorrectModificationState",
                    f"Cannot modify volume {volume_id}: a modification is already in progress.",
                )
            if now < last._zonal_started_at + self.life.delays.modify_cooldown:
                raise _error(
                    "VolumeModificationRateExceeded",
                    "You've reached the maximum modification rate per volume limit. "
                    "Wait at least 6 hours between modifications per EBS volume.",
                )
        if target_size is not None and int(target_size) < int(volume.size):
            raise _error("InvalidParameterValue", "New size cannot be smaller than existing size")
        old_size = int(volume.size)
        result = self._modify_volume(*args, **kwargs)
        modification = volume.modifications[-1]
        modification.__class__ = SimModification
        modification._zonal_life = self.life
        modification._zonal_started_at = self.life.now()
        if int(volume.size) != old_size:
            volume.size = int(volume.size)
            ctx.events.append(ev.Resized(volume_id, int(volume.size)))
        return result

    def create_snapshot(self, *args: Any, **kwargs: Any) -> Snapshot:
        snapshot: Snapshot = self._create_snapshot(*args, **kwargs)
        ctx = _acting("CreateSnapshot")
        if ctx is None:
            return snapshot
        # EC2 snapshots are point in time at CreateSnapshot, however long they stay pending.
        ctx.events.append(ev.SnapshotCreated(snapshot.id, snapshot.volume.id))
        snapshot.__dict__.pop("status", None)
        snapshot.__class__ = SimSnapshot
        sim: SimSnapshot = snapshot  # type: ignore[assignment]
        sim._zonal_life = self.life
        sim._zonal_started_at = self.life.now()
        sim._zonal_ready_at = sim._zonal_started_at + self.life.delays.snapshot
        sim.start_time = self.life.stamp()
        return sim

    def delete_snapshot(self, *args: Any, **kwargs: Any) -> Snapshot:
        snapshot: Snapshot = self._delete_snapshot(*args, **kwargs)
        ctx = _acting("DeleteSnapshot")
        if ctx is not None:
            ctx.events.append(ev.SnapshotDeleted(snapshot.id))
        return snapshot
