"""``blockAttachUntilInitialized``: ControllerPublishVolume succeeds only once a volume restored from a
snapshot is initialized (all its blocks loaded), so the workload never starts on a cold volume.

As aws-ebs-csi-driver (StorageClass parameter since v1.46): the class puts the flag in the volume
context, which Kubernetes hands back on every ControllerPublishVolume. The volume is attached first
(the attach and the initialization then run side by side), then EC2's DescribeVolumeStatus is polled
until its ``initialization-state`` is no longer ``initializing``, bounded by the call's deadline. When
the deadline passes the call fails with DeadlineExceeded (ABORTED): the attacher retries, finds the
volume attached and waits again. Blank volumes and volumes without the flag are not polled at all.

Over ports only: no boto3, no grpc.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.controller.waiter import Waiter
from provisioner.model import Volume
from provisioner.params import CONTEXT_BLOCK_ATTACH
from provisioner.ports.clock import Deadline
from provisioner.ports.cloud import Cloud


def wants_initialized(context: Mapping[str, str]) -> bool:
    """Whether the volume context asks to wait (its key matched case-insensitively, as PVs made by
    aws-ebs-csi-driver spell it their way)."""
    return any(k.lower() == CONTEXT_BLOCK_ATTACH and v.lower() == "true" for k, v in context.items())


def await_initialized(
    cloud: Cloud, waiter: Waiter, volume: Volume, context: Mapping[str, str], until: Deadline
) -> None:
    """Return once ``volume`` is initialized, if its context asks for that; raises DeadlineExceeded
    (ABORTED, the CO retries) when ``until`` passes first."""
    if not volume.snapshot_id or not wants_initialized(context):
        return
    volume_id = volume.volume_id
    if cloud.volume_initialized(volume_id):
        return
    waiter.wait(
        until,
        lambda: True if cloud.volume_initialized(volume_id) else None,
        lambda: (
            f"volume {volume_id} is attached but still initializing from snapshot {volume.snapshot_id} "
            "(blockAttachUntilInitialized); the call will find it attached when retried"
        ),
    )
