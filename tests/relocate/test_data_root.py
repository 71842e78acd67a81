"""The data itself moves (root only): a file written on the claim's volume in us-east-1b, through a real
loop device, mkfs.ext4 and mount, is read back from the new volume in us-east-1c after the relocation,
and again after a relocation that was killed in the middle and resumed. Every loop device this test
made is released, even when it fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.embedded.ec2 import BackerHooks
from provisioner.embedded.loopback import LoopBacker
from provisioner.mount.linux import LinuxMounter
from provisioner.ports.kube import Kind
from provisioner.ports.node import FormatOptions
from provisioner.relocate.plan import make_plan
from tests.relocate.test_crash import Dying, Killed, dying_relocator
from tests.relocate.world import World, make_world, provision

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mkfs, mount"),
]

MESSAGE = "written in us-east-1b before the relocation\n"


class Disk:
    """Attach, mount, detach the world's volumes on this machine, like the kubelet and the attacher."""

    def __init__(self, world: World, hooks: BackerHooks, root: Path) -> None:
        self.world, self.hooks, self.root = world, hooks, root
        self.mounter = LinuxMounter()
        self.mounted: list[str] = []

    def attach(self, volume_id: str, node: str) -> str:
        self.world.cloud.attach_volume(volume_id, self.world.instances[node], "/dev/xvdbz")
        return self.hooks.devices[volume_id]

    def detach(self, volume_id: str, node: str) -> None:
        self.world.cloud.detach_volume(volume_id, self.world.instances[node])
        self.world.advance(5.0)  # EC2 finishes the detach

    def mount(self, device: str, name: str) -> Path:
        target = self.root / name
        target.mkdir(parents=True, exist_ok=True)
        self.mounter.mount(device, str(target), "ext4", ())
        self.mounted.append(str(target))
        return target

    def unmount(self, target: Path) -> None:
        self.mounter.unmount(str(target))
        self.mounted.remove(str(target))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    backer = LoopBacker(tmp_path / "ebs")
    hooks = BackerHooks(backer)
    world = make_world(hooks=hooks)
    d = Disk(world, hooks, tmp_path / "mnt")
    try:
        yield d
    finally:
        for target in reversed(d.mounted):
            d.mounter.unmount(target)
        for path in sorted((tmp_path / "ebs").glob("vol-*")):
            backer.release(path.name)
        for path in sorted((tmp_path / "ebs").glob("snap-*")):
            backer.drop_snapshot(path.name)


def write_data(disk: Disk) -> str:
    """Provision claim default/data in us-east-1b, format it, write the file, unmount and detach."""
    _, pv = provision(disk.world)
    volume_id = pv["spec"]["csi"]["volumeHandle"]
    disk.world.advance(5.0)
    device = disk.attach(volume_id, "node-b")
    disk.mounter.format(device, "ext4", FormatOptions())
    target = disk.mount(device, "before")
    (target / "hello.txt").write_text(MESSAGE)
    disk.unmount(target)
    disk.detach(volume_id, "node-b")
    return str(volume_id)


def read_back(disk: Disk) -> str:
    claim = disk.world.claim()
    pv = disk.world.kube.get(Kind.PV, claim["spec"]["volumeName"])
    volume_id = pv["spec"]["csi"]["volumeHandle"]
    assert disk.world.cloud.get_volume(volume_id).zone == "us-east-1c"
    device = disk.attach(volume_id, "node-c")  # EC2 refuses an attach across zones: this is the new zone
    target = disk.mount(device, "after")
    try:
        text: str = (target / "hello.txt").read_text()
        return text
    finally:
        disk.unmount(target)
        disk.detach(volume_id, "node-c")


def test_the_file_is_read_back_in_the_new_zone(disk: Disk) -> None:
    source = write_data(disk)
    rel = disk.world.relocator()
    plan, _ = make_plan(disk.world.kube, disk.world.cloud, rel.driver, "default", "data", "us-east-1c")
    assert plan.ok, plan.checks
    rel.start(plan, delete_source=True)
    assert read_back(disk) == MESSAGE
    assert [v.volume_id for v in disk.world.volumes()] != [source]


def test_the_file_survives_a_kill_in_the_middle_and_a_resume(disk: Disk) -> None:
    write_data(disk)
    dying = Dying(at=9, after=True)  # after the new volume was created, before it was recorded
    rel = dying_relocator(disk.world, dying)
    plan, _ = make_plan(disk.world.kube, disk.world.cloud, rel.driver, "default", "data", "us-east-1c")
    with pytest.raises(Killed):
        rel.start(plan, delete_source=True)
    assert dying.killed_at.startswith("after create_volume")
    disk.world.relocator().resume("default", "data", take_over=True)  # the killed process is surely gone
    assert read_back(disk) == MESSAGE
    assert len(disk.world.volumes()) == 1
