"""ControllerPublishVolume / ControllerUnpublishVolume: attach and detach EBS volumes to instances.

Device names: EC2 wants the caller to pick a free device name. A fixed list (``/dev/xvdaa`` …
``/dev/xvdzz``, as aws-ebs-csi-driver) is walked in order; names in the instance's block-device
mappings, names reserved by attachments still in flight, names whose reservation ended after the
mappings were read, and — last of all — names that got stuck in ``attaching`` before are skipped.
The mappings are read with no lock held, so attaches to one instance share one (batched)
DescribeInstances instead of queueing behind each other's; only the pick and the reservation are
under the lock. A volume whose class set
``blockAttachUntilInitialized`` is published only once it is initialized (see :mod:`.initialization`).
Over ports only: no boto3, no grpc.
"""

from __future__ import annotations

import contextlib
import logging
import string
import threading
from collections import Counter
from collections.abc import Iterator, Mapping

from provisioner.config import ControllerConfig
from provisioner.controller.checks import check_capability, wants_multi_attach
from provisioner.controller.initialization import await_initialized
from provisioner.controller.queries import PUBLISHED_STATES
from provisioner.controller.waiter import Waiter
from provisioner.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationInProgress,
    ResourceExhausted,
    Unavailable,
)
from provisioner.model import Attachment, Instance, Volume, VolumeCapability, VolumeState
from provisioner.ports.clock import Deadline
from provisioner.ports.cloud import Cloud
from provisioner.ports.csi import InFlight

DEVICE_NAMES = tuple(f"/dev/xvd{a}{b}" for a in string.ascii_lowercase for b in string.ascii_lowercase)
PUBLISH_CONTEXT_DEVICE_PATH = "devicePath"
# The volume's size when attached: on Xen instances (disks without serials) the node checks the named
# device against it before using it (provisioner.mount.devices: a second check that can fail).
PUBLISH_CONTEXT_SIZE = "volumeSizeBytes"


def _context(device: str, volume: Volume) -> dict[str, str]:
    return {PUBLISH_CONTEXT_DEVICE_PATH: device, PUBLISH_CONTEXT_SIZE: str(volume.size_gib * 1024**3)}


class Attacher:
    def __init__(
        self,
        cloud: Cloud,
        waiter: Waiter,
        config: ControllerConfig,
        inflight: InFlight,
        logger: logging.Logger,
    ) -> None:
        self.cloud = cloud
        self.waiter = waiter
        self.config = config
        self.inflight = inflight
        self.log = logger
        self._lock = threading.Lock()
        self._reserved: dict[str, dict[str, str]] = {}  # instance → device → volume, attaches in flight
        # instance → device → when (in `_ticks`) its reservation ended: a read of the mappings begun
        # before then may predate the attachment, so the name counts as taken for that read.
        self._ended: dict[str, dict[str, int]] = {}
        self._ticks = 0
        self._reading: Counter[int] = Counter()  # `_ticks` at which reads of mappings now in flight began
        self._bad: dict[str, set[str]] = {}  # instance → device names that got stuck attaching

    def publish(
        self,
        volume_id: str,
        node_id: str,
        capability: VolumeCapability | None,
        readonly: bool,
        context: Mapping[str, str],
        deadline: Deadline | None,
    ) -> dict[str, str]:
        """Attach and return the publish context ``{"devicePath": …}``. ``readonly`` is honoured by the
        node's mount: EBS has no read-only attachment."""
        # CSI: required fields are checked before existence → INVALID_ARGUMENT.
        if not volume_id:
            raise InvalidArgument("volume_id is required")
        if not node_id:
            raise InvalidArgument("node_id is required")
        if capability is None:
            raise InvalidArgument("volume_capability is required")
        check_capability(capability)
        until = self.waiter.deadline(deadline)
        with self.inflight.hold(f"attach:{volume_id}:{node_id}", f"publishing {volume_id} to {node_id}"):
            with self._mappings_read() as read_from:
                # CSI: volume or node does not exist → NOT_FOUND (the cloud port raises it).
                volume = self.cloud.get_volume(volume_id)
                instance = self.cloud.get_instance(node_id)  # its mappings also pick the device name
                if wants_multi_attach(capability) and not volume.multi_attach:
                    raise InvalidArgument(
                        f"volume {volume_id} was not created with multi-attach; "
                        "MULTI_NODE_MULTI_WRITER needs it"
                    )
                mine = _attachment(volume, node_id)
                if mine is None:
                    self._check_attachable(volume, instance)
                    device = self._attach(volume_id, instance, read_from)
            if mine is not None and mine.state in PUBLISHED_STATES:
                await_initialized(self.cloud, self.waiter, volume, context, until)
                return _context(mine.device, volume)  # CSI: already published → same answer
            if mine is not None and mine.state == "detaching":
                raise OperationInProgress(
                    f"volume {volume_id} is still detaching from {node_id}; retry later"
                )
            if mine is not None:
                device = mine.device  # attaching: a previous call started it; wait for it
            try:
                device = self._wait_attached(volume_id, node_id, device, until)
            finally:
                self._release(node_id, device)
            await_initialized(self.cloud, self.waiter, volume, context, until)
            return _context(device, volume)

    def unpublish(self, volume_id: str, node_id: str, deadline: Deadline | None) -> None:
        """Detach from ``node_id``, or from every node when it is empty."""
        if not volume_id:
            raise InvalidArgument("volume_id is required")
        until = self.waiter.deadline(deadline)
        if not node_id:
            # CSI: node_id unset → "the SP MUST unpublish the volume from all nodes it is published to".
            try:
                volume = self.cloud.get_volume(volume_id)
            except NotFound:
                return  # CSI: an unknown volume is unpublished → OK
            for node in dict.fromkeys(a.instance_id for a in volume.attachments if a.state != "detached"):
                self._unpublish(volume_id, node, until)
            return
        self._unpublish(volume_id, node_id, until)

    def _unpublish(self, volume_id: str, node_id: str, until: Deadline) -> None:
        with self.inflight.hold(f"attach:{volume_id}:{node_id}", f"unpublishing {volume_id} from {node_id}"):
            # CSI: an unknown volume or node, or a volume already detached, is unpublished → OK.
            try:
                volume = self.cloud.get_volume(volume_id)
                self.cloud.get_instance(node_id)
            except NotFound:
                return
            mine = _attachment(volume, node_id)
            if mine is None:
                return
            if mine.state != "detaching":
                try:
                    self.cloud.detach_volume(volume_id, node_id)
                except NotFound:
                    return
            self.waiter.wait(
                until,
                lambda: self._detached(volume_id, node_id),
                lambda: f"volume {volume_id} is still detaching from {node_id}",
            )
            self._release(node_id, mine.device)

    def _check_attachable(self, volume: Volume, instance: Instance) -> None:
        if volume.zone != instance.zone:
            raise FailedPrecondition(
                f"volume {volume.volume_id} is in zone {volume.zone} but node {instance.instance_id} is in "
                f"zone {instance.zone}; EBS volumes attach only within their zone"
            )
        others = [a.instance_id for a in volume.attachments if a.state != "detached"]
        if others and not volume.multi_attach:
            # CSI: volume published to another node → FAILED_PRECONDITION.
            raise FailedPrecondition(
                f"volume {volume.volume_id} is attached to {', '.join(others)} and is not multi-attach"
            )
        if volume.state not in (VolumeState.AVAILABLE, VolumeState.IN_USE):
            raise FailedPrecondition(f"volume {volume.volume_id} is {volume.state.value}, not available")

    @contextlib.contextmanager
    def _mappings_read(self) -> Iterator[int]:
        """Marks a read of an instance's mappings in flight; yields the tick it began at (reservations
        that end after it count as taken for what that read found)."""
        with self._lock:
            read_from = self._ticks
            self._reading[read_from] += 1
        try:
            yield read_from
        finally:
            with self._lock:
                self._reading[read_from] -= 1
                if not self._reading[read_from]:
                    del self._reading[read_from]

    def _attach(self, volume_id: str, instance: Instance, read_from: int) -> str:
        """Pick a free device name from ``instance`` (its mappings as read since tick ``read_from``),
        reserve it and call AttachVolume."""
        node_id = instance.instance_id
        with self._lock:
            reserved = self._reserved.setdefault(node_id, {})
            ended = {d for d, tick in self._ended.get(node_id, {}).items() if tick > read_from}
            self._forget_ended(node_id)
            bad = self._bad.get(node_id, set())
            used = set(instance.block_devices) | set(reserved) | ended
            free = [d for d in DEVICE_NAMES if d not in used]
            ordered = [d for d in free if d not in bad] + [d for d in free if d in bad]
            if not ordered:
                raise ResourceExhausted(f"node {node_id} has no free device name left")
            device = ordered[0]
            reserved[device] = volume_id
        try:
            # CSI: max volumes attached → RESOURCE_EXHAUSTED (the port raises it for the limit).
            self.cloud.attach_volume(volume_id, node_id, device)
        except BaseException:
            self._release(node_id, device)
            raise
        self.log.info("attaching %s to %s as %s", volume_id, node_id, device)
        return device

    def _forget_ended(self, node_id: str) -> None:
        """Drop the node's ends that no read still in flight began before (under ``_lock``), so its
        record stays as small as the attaches in progress."""
        oldest = min(self._reading, default=self._ticks)
        kept = {d: tick for d, tick in self._ended.get(node_id, {}).items() if tick > oldest}
        if kept:
            self._ended[node_id] = kept
        else:
            self._ended.pop(node_id, None)

    def _release(self, node_id: str, device: str) -> None:
        with self._lock:
            if self._reserved.get(node_id, {}).pop(device, None) is not None:
                self._ticks += 1
                self._ended.setdefault(node_id, {})[device] = self._ticks

    def _wait_attached(self, volume_id: str, node_id: str, device: str, until: Deadline) -> str:
        attach_deadline = Deadline(self.waiter.clock, self.config.attach_timeout)
        try:
            return self.waiter.wait(
                self.waiter.sooner(until, self.config.attach_timeout),
                lambda: self._attached_device(volume_id, node_id),
                lambda: f"volume {volume_id} is still attaching to {node_id} as {device}",
            )
        except DeadlineExceeded:
            if not attach_deadline.expired():
                raise  # the caller's deadline: the attach goes on, a retry waits again
        # Stuck in "attaching" (a known EBS failure, often a reused device name): undo and let the
        # CO retry, with this name tried last next time.
        with self._lock:
            self._bad.setdefault(node_id, set()).add(device)
        with contextlib.suppress(NotFound):
            self.cloud.detach_volume(volume_id, node_id)
        raise Unavailable(
            f"volume {volume_id} stayed attaching to {node_id} as {device} for "
            f"{self.config.attach_timeout:g} s; detached it, retry"
        )

    def _attached_device(self, volume_id: str, node_id: str) -> str | None:
        mine = _attachment(self.cloud.get_volume(volume_id), node_id)
        if mine is None or mine.state in ("detaching", "detached"):
            raise Unavailable(f"the attachment of {volume_id} to {node_id} went away while attaching; retry")
        return mine.device if mine.state in PUBLISHED_STATES else None

    def _detached(self, volume_id: str, node_id: str) -> bool | None:
        try:
            volume = self.cloud.get_volume(volume_id)
        except NotFound:
            return True
        mine = _attachment(volume, node_id)
        return True if mine is None or mine.state == "detached" else None


def _attachment(volume: Volume, node_id: str) -> Attachment | None:
    return next((a for a in volume.attachments if a.instance_id == node_id), None)
