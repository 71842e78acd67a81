"""Pieces of ``zonal demo`` that are not the story itself: the recording CSI client, mount and
folder helpers. Kept apart so story.py reads as the story."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from provisioner.cli import CliError
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.client import GrpcCsiClient
from provisioner.embedded.ledger import Ledger, remove_folder
from provisioner.mount.devices import SysfsDeviceResolver
from provisioner.mount.linux import LinuxMounter
from provisioner.mount.state import FileNodeState
from provisioner.node import NodeConfig, NodeCore
from provisioner.node_metadata import resolve_metadata
from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import CreatedVolume, CreateVolumeRequest
from provisioner.ports.node import NodeMetadata


class RecordingCsi:
    """The loop's CSI client, recording each CreateVolume so the demo can show what was sent."""

    def __init__(self, inner: GrpcCsiClient) -> None:
        self.inner = inner
        self.created: list[tuple[CreateVolumeRequest, CreatedVolume]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        answer = self.inner.create_volume(request)
        self.created.append((request, answer))
        return answer


def node_core(
    metadata: NodeMetadata, cloud_folder: Path, state_folder: Path, log: logging.Logger
) -> NodeCore:
    """A demo node's core, built as ``zonal all --cloud embedded`` builds its own: loop devices count
    as volumes only when their file is in the embedded cloud's folder, and what the node mounts is
    recorded in its own state folder (so unstage/unpublish can prove it)."""
    return NodeCore(
        LinuxMounter(),
        SysfsDeviceResolver(loop_dirs=(str(cloud_folder),)),
        resolve_metadata([], metadata),
        NodeConfig(),
        SystemClock(),
        log,
        state=FileNodeState(state_folder),
    )


def mount_source(path: str) -> str:
    """The source of the mount at ``path`` per /proc/self/mountinfo, or "" when nothing is mounted."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[4] == path:
            sep = fields.index("-")
            return fields[sep + 2]
    return ""


def unmount_below(folder: Path) -> None:
    """Last resort after a failed step: unmount anything the demo left under its folder."""
    with contextlib.suppress(Exception):
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        mounter = LinuxMounter()
        for m in sorted((m for m in mounts if m.startswith(str(folder) + "/")), key=len, reverse=True):
            with contextlib.suppress(Exception):
                mounter.unmount(m)


@contextlib.contextmanager
def demo_folder(path: str, ledger: Ledger | None = None) -> Iterator[Path]:
    """``--dir`` (made if missing, kept afterwards), or a new temporary folder that is recorded in the
    ``ledger`` and removed at the end — never while something is still mounted below it."""
    if path:
        p = Path(path).resolve()
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CliError(f"--dir {path}: {e.strerror}") from e
        yield p
        return
    tmp = Path(tempfile.mkdtemp(prefix="zonal-demo-")).resolve()
    if ledger is not None:
        ledger.folder_made(tmp)
    try:
        yield tmp
    finally:
        if remove_folder(str(tmp)) and ledger is not None:
            ledger.folder_removed(tmp)


MOUNT_EXT4 = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


class PodVolume:
    """One pod's use of one volume on one node, over CSI: the attacher's ControllerPublish, then the
    kubelet's NodeStage (mkfs on first use, mount) and NodePublish; :meth:`release` undoes all three."""

    def __init__(
        self,
        controller: grpc.Channel,
        node: grpc.Channel,
        volume_id: str,
        instance: str,
        stage: Path,
        target: Path,
    ) -> None:
        self.ctl = csi_pb2_grpc.ControllerStub(controller)
        self.nod = csi_pb2_grpc.NodeStub(node)
        self.volume_id, self.instance, self.stage, self.target = volume_id, instance, stage, target

    def attach(self) -> dict[str, str]:
        pub = self.ctl.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=self.volume_id, node_id=self.instance, volume_capability=MOUNT_EXT4
            ),
            timeout=60,
        )
        return dict(pub.publish_context)

    def mount(self, publish_context: dict[str, str]) -> None:
        self.nod.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=self.volume_id,
                publish_context=publish_context,
                staging_target_path=str(self.stage),
                volume_capability=MOUNT_EXT4,
            ),
            timeout=120,
        )
        self.nod.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=self.volume_id,
                publish_context=publish_context,
                staging_target_path=str(self.stage),
                target_path=str(self.target),
                volume_capability=MOUNT_EXT4,
            ),
            timeout=60,
        )

    def release(self) -> bool:
        """Unpublish, unstage, detach; True when no mount was left behind."""
        self.nod.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=self.volume_id, target_path=str(self.target)),
            timeout=60,
        )
        self.nod.NodeUnstageVolume(
            csi_pb2.NodeUnstageVolumeRequest(volume_id=self.volume_id, staging_target_path=str(self.stage)),
            timeout=60,
        )
        self.ctl.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=self.volume_id, node_id=self.instance),
            timeout=60,
        )
        return not (mount_source(str(self.target)) or mount_source(str(self.stage)))
