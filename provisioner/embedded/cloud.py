"""``--cloud embedded``: an in-process simulated EC2 account, so zonal runs with no AWS account.

The simulator (:mod:`provisioner.embedded.ec2`) validates zones, honours ClientToken and moves volumes
through ``creating → available`` like EC2. One instance is started in it for this process's node.
When the process may use loop devices (root), every attached volume is backed by a sparse file on a
loop device (snapshots and the volumes restored from them carry that data), and the loop device is
linked where a Nitro instance shows an EBS volume
(``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol…``), so NodeStage finds it through the same
code path as on EC2 and really formats and mounts it. State lives in memory and in
``--embedded-state-dir``; everything is released when the process stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.aws.callmetrics import Ec2Observer, install_metrics
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.embedded.ledger import Ledger, release_device, remove_folder
from provisioner.embedded.loopback import LoopBacker
from provisioner.mount.devices import NVME_BY_ID_PREFIX
from provisioner.ports.clock import deadline_scope
from provisioner.ports.node import NodeMetadata

if TYPE_CHECKING:
    # The simulator imports moto (~2 s): it is imported only when an embedded cloud is built.
    from provisioner.embedded.ec2 import Simulator

log = logging.getLogger("zonal.embedded")


def _cloud_time() -> contextlib.AbstractContextManager[None]:
    """The simulated EC2 does its work (losetup, copies) on its own time, as EC2 attaches a volume after
    the client gave up waiting: the RPC deadline that called into it in-process must not cut it short,
    or EC2 says "attached" while no device ever appears."""
    return deadline_scope(None)


class LinkingHooks:
    """BackerHooks that also link each backing device under ``/dev/disk/by-id`` like Nitro does."""

    def __init__(self, backer: LoopBacker, dev_root: str = "/dev", ledger: Ledger | None = None) -> None:
        from provisioner.embedded.ec2.hooks import BackerHooks

        self._inner = BackerHooks(backer)
        self._dev_root = dev_root
        self._ledger = ledger

    @property
    def devices(self) -> dict[str, str]:
        return self._inner.devices

    def link(self, volume_id: str) -> Path:
        return Path(self._dev_root) / (NVME_BY_ID_PREFIX + volume_id.replace("-", ""))

    def attached(self, volume_id: str, instance_id: str, device: str, size_gib: int) -> None:
        with _cloud_time():
            self._inner.attached(volume_id, instance_id, device, size_gib)
        target = self.devices.get(volume_id)
        if target:
            link = self.link(volume_id)
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            if self._ledger is not None:
                self._ledger.link_made(link, target)
            link.symlink_to(target)

    def unlink(self, volume_id: str) -> None:
        """Remove the volume's by-id link (if there is one)."""
        link = self.link(volume_id)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        if self._ledger is not None:
            self._ledger.link_removed(link)

    def detached(self, volume_id: str, instance_id: str) -> None:
        self.unlink(volume_id)
        with _cloud_time():
            self._inner.detached(volume_id, instance_id)

    def deleted(self, volume_id: str) -> None:
        self.unlink(volume_id)
        with _cloud_time():
            self._inner.deleted(volume_id)

    def resized(self, volume_id: str, size_gib: int) -> None:
        with _cloud_time():
            self._inner.resized(volume_id, size_gib)

    def snapshot_created(self, snapshot_id: str, volume_id: str) -> None:
        with _cloud_time():
            self._inner.snapshot_created(snapshot_id, volume_id)

    def volume_restored(self, volume_id: str, snapshot_id: str, size_gib: int) -> None:
        with _cloud_time():
            self._inner.volume_restored(volume_id, snapshot_id, size_gib)

    def snapshot_deleted(self, snapshot_id: str) -> None:
        with _cloud_time():
            self._inner.snapshot_deleted(snapshot_id)


@dataclass
class EmbeddedCloud:
    simulator: Simulator
    cloud: Ec2Cloud
    node: NodeMetadata
    state_dir: Path
    hooks: LinkingHooks | None
    backer: LoopBacker | None
    _owns_state_dir: bool = False
    _closed: threading.Event = field(default_factory=threading.Event)
    ledger: Ledger | None = None

    def close(self) -> None:
        """Release everything this process made for its volumes: mounts of its loop devices (a volume
        still staged or published when the process stops), the loop devices, the by-id links, the
        backing files and the snapshots' data, and the state folder it made. Only this process's
        devices are unmounted — the embedded world's own, never a mount it did not back."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self.hooks is not None and self.backer is not None:
            for path in sorted(self.state_dir.glob("vol-*")):
                try:
                    for device in self.backer.devices(path.name):
                        if release_device(device, str(path.resolve())) and self.ledger is not None:
                            self.ledger.loop_removed(device)
                    self.hooks.unlink(path.name)
                    self.backer.release(path.name)
                except Exception:  # best effort at shutdown: report, go on with the others
                    log.exception("could not release the backing of %s", path.name)
            for path in sorted(self.state_dir.glob("snap-*")):
                try:
                    self.backer.drop_snapshot(path.name)
                except Exception:  # best effort, as above
                    log.exception("could not delete the data of %s", path.name)
        if self._owns_state_dir and remove_folder(str(self.state_dir)) and self.ledger is not None:
            self.ledger.folder_removed(self.state_dir)


def build_embedded(
    region: str,
    zones: tuple[str, ...],
    node_zone: str,
    state_dir: str = "",
    fast: bool = False,
    back_devices: bool | None = None,
    metrics: Ec2Observer | None = None,
    ledger: Ledger | None = None,
) -> EmbeddedCloud:
    """Start an embedded EC2 account with one instance in ``node_zone`` (the first zone if empty).

    With a ``ledger`` every folder, backing file, loop device and link it makes is recorded there, so
    a later start can release them if this process dies without :meth:`EmbeddedCloud.close`."""
    from provisioner.embedded.ec2 import SimConfig, Simulator
    from provisioner.embedded.ec2.config import Delays

    zone = node_zone or zones[0]
    if zone not in zones:
        raise ValueError(f"node zone {zone} is not one of the embedded zones {', '.join(zones)}")
    owns = not state_dir
    folder = Path(state_dir or tempfile.mkdtemp(prefix="zonal-embedded-")).resolve()
    if owns and ledger is not None:
        ledger.folder_made(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if back_devices is None:
        back_devices = os.geteuid() == 0
    backer = LoopBacker(folder, ledger) if back_devices else None
    hooks = LinkingHooks(backer, ledger=ledger) if backer is not None else None
    if hooks is None:
        log.warning("not root: embedded volumes get no loop devices, so NodeStage cannot mount them")
    # Trials expand the same volume more than once: no six-hour cooldown between modifications here.
    delays = (
        Delays.instant()
        if fast
        else Delays(volume_create=1.0, attach=0.5, detach=0.5, snapshot=2.0, modify_cooldown=0.0)
    )
    # One process's own calls should not be throttled by an account-wide simulation unless asked.
    sim = Simulator(SimConfig(region=region, zones=zones, delays=delays, throttling=False), hooks=hooks)
    instance_id = sim.create_instance(zone)
    client = sim.client(region)
    if metrics is not None:
        install_metrics(client, metrics)
    cloud = Ec2Cloud(client, region)
    node = NodeMetadata(
        instance_id=instance_id, zone=zone, instance_type="m5.large", region=region, source="embedded"
    )
    log.info("embedded EC2 in %s (zones %s); node %s in %s", region, ",".join(zones), instance_id, zone)
    return EmbeddedCloud(sim, cloud, node, folder, hooks, backer, owns, ledger=ledger)
