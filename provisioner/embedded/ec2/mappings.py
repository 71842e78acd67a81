"""An instance's block-device mappings as EC2 lists them: with their attachment's state, and still there
while the volume detaches.

moto writes a mapping's status once at AttachVolume (``attached`` at once) and deletes the mapping at
DetachVolume. Real EC2's DescribeInstances shows ``attaching`` → ``attached`` → ``detaching`` and keeps
the mapping, and its device name taken, until the detach completes; a caller that picks device names
from DescribeInstances would otherwise pick a name EC2 still refuses. :class:`SimBlockDevice` reads its
status from the simulator's attachment (:class:`provisioner.embedded.ec2.state.SimAttachment`, whose
state follows the clock); :class:`Lingering` puts a mapping back after moto's detach and removes it once
the attachment is gone. This module must not call moto's backend nor read a clock itself: callers hold
the simulator's lock.
"""

from __future__ import annotations

from typing import Any, Protocol

from moto.ec2.models.block_device import BlockDeviceType


class _Attachment(Protocol):
    """What a mapping needs of its attachment (``SimAttachment``; a protocol to avoid an import cycle)."""

    @property
    def status(self) -> str: ...

    def gone(self) -> bool: ...


class SimBlockDevice(BlockDeviceType):
    """One ``Ebs`` entry of an instance's mappings, in the state of the attachment it shows."""

    _zonal_attachment: _Attachment

    @property
    def status(self) -> str:
        return self._zonal_attachment.status

    @status.setter
    def status(self, value: str) -> None:
        """moto writes a status when it renders a copy; the attachment decides, so the write is dropped."""


def follow(instance: Any, device: str, attachment: _Attachment) -> SimBlockDevice | None:
    """Make the mapping moto just wrote for ``device`` show ``attachment``'s state."""
    block = instance.block_device_mapping.get(device)
    if block is None:
        return None
    if not isinstance(block, SimBlockDevice):
        block.__dict__.pop("status", None)
        block.__class__ = SimBlockDevice
    sim: SimBlockDevice = block
    sim._zonal_attachment = attachment
    return sim


class Lingering:
    """Mappings put back after DetachVolume, removed when their attachment is gone (one per backend)."""

    def __init__(self) -> None:
        self._kept: list[tuple[Any, str, SimBlockDevice]] = []

    def keep(self, instance: Any, device: str, block: SimBlockDevice) -> None:
        instance.block_device_mapping[device] = block
        self._kept.append((instance, device, block))

    def settle(self) -> None:
        """Drop the mappings whose detach completed; one still detaching stays listed and its name taken."""
        still: list[tuple[Any, str, SimBlockDevice]] = []
        for instance, device, block in self._kept:
            if not block._zonal_attachment.gone():
                still.append((instance, device, block))
            elif instance.block_device_mapping.get(device) is block:  # not replaced or torn down since
                del instance.block_device_mapping[device]
        self._kept = still
