"""ControllerExpandVolume and ControllerModifyVolume over the Cloud port, with the merge window.

EC2 runs one modification of a volume at a time and limits how often a volume may be modified, while
Kubernetes may ask for a new size (external-resizer) and new VolumeAttributesClass parameters at almost
the same moment. So requests for the same volume that arrive within ``modify_merge_window`` seconds are
merged into ONE ``ModifyVolume``: the first caller opens a batch and waits out the window (on the
injected clock), later callers add their wishes to it and wait for its outcome. Two requests that want
different values for the same attribute conflict: the later caller fails with ABORTED and retries; the
earlier one is unaffected. Sizes never conflict (the larger size satisfies both).

Documented choices:

* Expansion rounds up to whole GiB; the answer is the new size; ``node_expansion_required`` is true
  unless the capability is block (the node grows the filesystem). The call waits until EC2 reports the
  modification ``optimizing`` or ``completed`` (the new size is usable then), bounded by the deadline.
* EC2's refusals (a modification in progress, the rate limit) become ModificationRateLimited
  (RESOURCE_EXHAUSTED) with a message saying when a retry can succeed.
* Tag changes (``tagSpecification_N``, ``tagDeletion_N``) are applied at once with CreateTags /
  DeleteTags; they are not modifications in EC2's sense and never wait for the window. Tag values are
  templates over ``.PVCName``, ``.PVCNamespace``, ``.PVName`` (the resizer's ``--extra-modify-metadata``
  keys); the deprecated ``volumeType`` means ``type`` unless ``type`` is given too.
* A volume that remembers ``allowAutoIOPSIncreaseOnModify`` (see :mod:`.drivertags`) gets its IOPS
  raised with its size on expansion, in the same ModifyVolume; a floor, never a conflict.

Over ports only: no boto3, no grpc. It must not decide zones or create volumes.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner import params as P
from provisioner.config import ControllerConfig
from provisioner.controller.drivertags import auto_iops
from provisioner.controller.waiter import Waiter
from provisioner.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ModificationRateLimited,
    OperationInProgress,
    OutOfRange,
    ZonalError,
    shown,
)
from provisioner.model import GIB, AccessType, CapacityRange, Volume, VolumeCapability
from provisioner.ports.clock import Deadline
from provisioner.ports.cloud import Cloud, VolumeModification

KEY_TAG_DELETION_PREFIX = P.KEY_TAG_DELETION_PREFIX
_AT_LEAST = frozenset({"size_gib", "iops_min"})  # merged by taking the larger wish, never a conflict
_IN_PROGRESS = frozenset({"modifying", "optimizing"})
_USABLE = frozenset({"optimizing", "completed"})


@dataclass(frozen=True)
class Expanded:
    """ControllerExpandVolume's answer."""

    capacity_bytes: int
    node_expansion_required: bool


@dataclass(frozen=True)
class ModifyRequest:
    """Validated ControllerModifyVolume ``mutable_parameters``."""

    volume_type: str | None = None
    iops: int | None = None
    throughput: int | None = None
    add_tags: Mapping[str, str] = field(default_factory=dict)
    remove_tags: tuple[str, ...] = ()


def parse_mutable(parameters: Mapping[str, str]) -> ModifyRequest:
    """``mutable_parameters`` → ModifyRequest (empty: nothing to change). CSI: parameters not supported
    → INVALID_ARGUMENT."""
    volume_type: str | None = None
    iops: int | None = None
    throughput: int | None = None
    add: dict[str, str] = {}
    remove: list[str] = []
    specs: list[tuple[str, str]] = []
    lowered = {k.lower() for k in parameters}
    for key, value in parameters.items():
        lower = key.lower()
        if lower == P.KEY_VOLUME_TYPE_DEPRECATED and P.KEY_TYPE in lowered:
            continue  # aws-ebs-csi-driver: the preferred key "type" wins over "volumeType"
        if lower in (P.KEY_TYPE, P.KEY_VOLUME_TYPE_DEPRECATED):
            volume_type = value.strip().lower()
            if volume_type not in P.VOLUME_TYPES:
                raise InvalidArgument(
                    f"parameter {shown(key)}: unknown volume type {shown(value)}; "
                    f"expected one of {sorted(P.VOLUME_TYPES)}"
                )
        elif lower == P.KEY_IOPS:
            iops = P.positive_int(key, value)
        elif lower == P.KEY_THROUGHPUT:
            throughput = P.positive_int(key, value)
        elif lower.startswith(P.KEY_TAG_SPEC_PREFIX) and len(lower) > len(P.KEY_TAG_SPEC_PREFIX):
            specs.append((key, value))  # a template: rendered once every field is known
        elif lower in P.VOLUME_FIELDS.values():
            pass  # the resizer's --extra-modify-metadata: template fields only
        elif lower.startswith(KEY_TAG_DELETION_PREFIX) and len(lower) > len(KEY_TAG_DELETION_PREFIX):
            tag_key = value.strip()
            if not tag_key:
                raise InvalidArgument(f"parameter {shown(key)}: a tag key is required")
            P.check_tag_key(key, tag_key)
            remove.append(tag_key)
        else:
            raise InvalidArgument(f"unknown mutable parameter {shown(key)}")
    fields = P.template_fields(parameters, P.VOLUME_FIELDS)
    for key, value in specs:
        tag_key, tag_value = P.render_tag_spec(key, value, fields)
        add[tag_key] = tag_value
    clash = sorted(set(add) & set(remove))
    if clash:
        raise InvalidArgument(f"tag {shown(clash[0])} is both added and deleted")
    return ModifyRequest(volume_type, iops, throughput, add, tuple(remove))


def _check_performance(request: ModifyRequest, volume: Volume) -> None:
    volume_type = request.volume_type or volume.volume_type
    limits = P.VOLUME_TYPES.get(volume_type)
    if limits is None:
        return  # a type this driver does not know: EC2 judges
    if request.iops is not None:
        if limits.min_iops is None or limits.max_iops is None:
            raise InvalidArgument(f"parameter 'iops': volume type {volume_type} has no provisioned IOPS")
        if not limits.min_iops <= request.iops <= limits.max_iops:
            raise InvalidArgument(
                f"parameter 'iops': {request.iops} is outside "
                f"{limits.min_iops}-{limits.max_iops} for {volume_type}"
            )
    if request.throughput is not None:
        if limits.min_throughput is None or limits.max_throughput is None:
            raise InvalidArgument(f"parameter 'throughput': volume type {volume_type} takes no throughput")
        if not limits.min_throughput <= request.throughput <= limits.max_throughput:
            raise InvalidArgument(
                f"parameter 'throughput': {request.throughput} MiB/s is outside "
                f"{limits.min_throughput}-{limits.max_throughput} MiB/s for {volume_type}"
            )


class _Batch:
    """Wishes for one volume collected during one merge window."""

    def __init__(self) -> None:
        self.want: dict[str, int | str] = {}
        self.done = threading.Event()
        self.error: ZonalError | None = None
        self.modification: VolumeModification | None = None


def _covers(mod: VolumeModification, changes: Mapping[str, int | str | None]) -> bool:
    """Whether a running modification already asks for every change."""
    targets: dict[str, int | str | None] = {
        "size_gib": mod.target_size_gib,
        "volume_type": mod.target_type,
        "iops": mod.target_iops,
        "throughput": mod.target_throughput,
    }
    for key, value in changes.items():
        if value is None:
            continue
        target = targets[key]
        if key == "size_gib" and isinstance(target, int) and isinstance(value, int):
            if target < value:
                return False
        elif target != value:
            return False
    return True


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Modifier:
    def __init__(
        self,
        cloud: Cloud,
        waiter: Waiter,
        config: ControllerConfig,
        logger: logging.Logger,
        driver_name: str = "",
    ) -> None:
        self.cloud = cloud
        self.driver_name = driver_name  # prefix of the allowAutoIOPSIncreaseOnModify tags
        self.waiter = waiter
        self.config = config
        self.log = logger
        self._lock = threading.Lock()
        self._batches: dict[str, _Batch] = {}

    # ControllerExpandVolume.

    def expand(
        self,
        volume_id: str,
        capacity: CapacityRange | None,
        capability: VolumeCapability | None,
        deadline: Deadline | None,
    ) -> Expanded:
        # CSI: volume_id and capacity_range are required → INVALID_ARGUMENT.
        if not volume_id:
            raise InvalidArgument("volume_id is required")
        if capacity is None or capacity.required_bytes <= 0:
            raise InvalidArgument("capacity_range.required_bytes is required")
        # CSI: node_expansion_required is false for block volumes (nothing to grow on the node).
        node_required = capability is None or capability.access_type is not AccessType.BLOCK
        size = -(-capacity.required_bytes // GIB)  # round up to whole GiB
        # CSI: unsupported capacity_range → OUT_OF_RANGE.
        if capacity.limit_bytes and size * GIB > capacity.limit_bytes:
            raise OutOfRange(
                f"capacity_range: {size} GiB (required_bytes rounded up) exceeds "
                f"limit_bytes {capacity.limit_bytes}"
            )
        until = self.waiter.deadline(deadline)
        volume = self.cloud.get_volume(volume_id)  # CSI: volume does not exist → NOT_FOUND
        limits = P.VOLUME_TYPES.get(volume.volume_type)
        if limits is not None and size > limits.max_gib:
            raise OutOfRange(f"{size} GiB exceeds the {volume.volume_type} maximum of {limits.max_gib} GiB")
        if volume.size_gib >= size:
            # CSI: already at (or above) the requested size → OK; wait for a running resize first.
            latest = self.cloud.get_volume_modification(volume_id)
            if latest is not None and latest.state in _IN_PROGRESS:
                self._wait_usable(volume_id, until)
            return Expanded(volume.size_gib * GIB, node_required)
        want: dict[str, int | str] = {"size_gib": size}
        raised = auto_iops(volume, self.driver_name, size)
        if raised is not None:
            want["iops_min"] = raised  # allowAutoIOPSIncreaseOnModify: IOPS grow with the size
        merged = self._submit(volume_id, want, until).get("size_gib", size)
        self._wait_usable(volume_id, until)
        # A merged request may have asked for more than this caller: answer the real new size.
        return Expanded(max(size, int(merged)) * GIB, node_required)

    # ControllerModifyVolume.

    def modify(
        self, volume_id: str, mutable_parameters: Mapping[str, str], deadline: Deadline | None
    ) -> None:
        if not volume_id:
            raise InvalidArgument("volume_id is required")
        request = parse_mutable(mutable_parameters)
        until = self.waiter.deadline(deadline)
        volume = self.cloud.get_volume(volume_id)  # CSI: volume does not exist → NOT_FOUND
        if request == ModifyRequest():
            return  # CSI: no mutable_parameters on an existing volume → OK, nothing to change
        _check_performance(request, volume)
        if request.add_tags:
            self.cloud.create_tags(volume_id, request.add_tags)
        if request.remove_tags:
            self.cloud.delete_tags(volume_id, request.remove_tags)
        want: dict[str, int | str] = {}
        if request.volume_type is not None and request.volume_type != volume.volume_type:
            want["volume_type"] = request.volume_type
        if request.iops is not None and request.iops != volume.iops:
            want["iops"] = request.iops
        if request.throughput is not None and request.throughput != volume.throughput:
            want["throughput"] = request.throughput
        if not want:
            latest = self.cloud.get_volume_modification(volume_id)
            if latest is not None and latest.state in _IN_PROGRESS:
                self._wait_usable(volume_id, until)
            return
        self._submit(volume_id, want, until)
        self._wait_usable(volume_id, until)

    # The merge window.

    def _submit(
        self, volume_id: str, want: Mapping[str, int | str], until: Deadline
    ) -> Mapping[str, int | str]:
        """Add ``want`` to the volume's batch and return the batch's merged wishes once it was sent."""
        with self._lock:
            batch = self._batches.get(volume_id)
            leader = batch is None
            if batch is None:
                batch = self._batches[volume_id] = _Batch()
            else:
                for key, value in want.items():
                    held = batch.want.get(key)
                    if key not in _AT_LEAST and held is not None and held != value:
                        # The later caller fails; the earlier wish goes ahead unchanged.
                        raise OperationInProgress(
                            f"volume {volume_id}: {key}={value} conflicts with {key}={held} requested "
                            "moments earlier by another call; retry after that modification"
                        )
            for key, value in want.items():
                held = batch.want.get(key)
                if key in _AT_LEAST and isinstance(held, int) and isinstance(value, int):
                    batch.want[key] = max(held, value)
                else:
                    batch.want[key] = value
        if leader:
            self.waiter.clock.sleep(until.bounded(self.config.modify_merge_window))
            with self._lock:
                del self._batches[volume_id]
            try:
                batch.modification = self._apply(volume_id, batch.want)
            except ZonalError as e:
                batch.error = e
                raise
            except BaseException:
                batch.error = Internal(f"the merged modification of {volume_id} failed; see the plugin's log")
                raise
            finally:
                batch.done.set()
            return batch.want
        remaining = until.remaining()
        if not batch.done.wait(None if remaining is None else max(0.0, remaining)):
            raise DeadlineExceeded(f"volume {volume_id}: the merged modification was not sent in time; retry")
        if batch.error is not None:
            raise type(batch.error)(batch.error.message) from batch.error
        return batch.want

    def _apply(self, volume_id: str, want: Mapping[str, int | str]) -> VolumeModification | None:
        """Send what still differs from the volume as one ModifyVolume."""
        volume = self.cloud.get_volume(volume_id)
        size = want.get("size_gib")
        vtype = want.get("volume_type")
        iops = want.get("iops")
        floor = want.get("iops_min")
        if isinstance(floor, int) and floor > (iops if isinstance(iops, int) else volume.iops or 0):
            iops = floor  # only ever raised: an explicit iops above the floor stands
        throughput = want.get("throughput")
        new_size = size if isinstance(size, int) and size > volume.size_gib else None
        new_type = vtype if isinstance(vtype, str) and vtype != volume.volume_type else None
        new_iops = iops if isinstance(iops, int) and iops != volume.iops else None
        new_throughput = (
            throughput if isinstance(throughput, int) and throughput != volume.throughput else None
        )
        changes = {
            "size_gib": new_size,
            "volume_type": new_type,
            "iops": new_iops,
            "throughput": new_throughput,
        }
        if all(v is None for v in changes.values()):
            return None
        self.log.info(
            "modifying volume %s: %s",
            volume_id,
            ", ".join(f"{k}={v}" for k, v in changes.items() if v is not None),
        )
        try:
            return self.cloud.modify_volume(
                volume_id, size_gib=new_size, volume_type=new_type, iops=new_iops, throughput=new_throughput
            )
        except ModificationRateLimited as e:
            try:
                latest = self.cloud.get_volume_modification(volume_id)
            except ZonalError:
                latest = None
            if latest is not None and latest.state in _IN_PROGRESS and _covers(latest, changes):
                return latest  # a retry of the modification already running: wait for it
            raise ModificationRateLimited(self._retry_message(volume_id, e, latest)) from e

    def _retry_message(
        self, volume_id: str, e: ModificationRateLimited, latest: VolumeModification | None
    ) -> str:
        """Say when EC2 will accept the next modification of the volume."""
        if latest is None:
            return f"EC2 refused to modify volume {volume_id} ({e.message}); retry later"
        started = _iso(latest.start_time) if latest.start_time else "an unknown time"
        if latest.state in _IN_PROGRESS:
            return (
                f"volume {volume_id} is still being modified (state {latest.state}, started {started}); "
                f"EC2 allows one modification at a time: retry when it has completed ({e.message})"
            )
        retry_at = _iso(latest.start_time + self.config.modify_cooldown) if latest.start_time else "later"
        return (
            f"EC2's modification rate limit for volume {volume_id} was reached ({e.message}); the latest "
            f"modification started at {started}: retry after {retry_at}"
        )

    def _wait_usable(self, volume_id: str, until: Deadline) -> VolumeModification | None:
        def check() -> VolumeModification | None:
            mod = self.cloud.get_volume_modification(volume_id)
            if mod is None or mod.state in _USABLE:
                return mod or VolumeModification(volume_id, "completed", 0)
            if mod.state == "failed":
                raise Internal(f"EC2 failed to modify volume {volume_id} (modification state failed)")
            return None

        first = check()
        if first is not None:
            return first
        return self.waiter.wait(
            until,
            check,
            lambda: f"volume {volume_id} is still being modified; the call will find it when retried",
        )
