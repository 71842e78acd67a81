"""Decoys on the real kernel (root): devices that are not the volume and paths that are not its own.

Every device decoy is handed to NodeStageVolume (and block NodePublishVolume) as ``devicePath``; the
proof that mkfs never ran is twofold: the decoy's content hash is unchanged and no ``mkfs`` appears in
the command log (the runner logs every command it starts). Every path decoy is handed to the calls
that would unmount, delete, mount or resize there; the proof is a snapshot of the tree and of the
mount table, unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, NotFound
from provisioner.model import AccessMode, AccessType, VolumeCapability
from provisioner.mount.devices import SysfsDeviceResolver
from provisioner.mount.linux import run
from provisioner.ports.node import FormatMarker
from tests.node.loopkit import MIB, Kit, Tree, file_hash, mounts_under, new_volume_id, snapshot

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mkfs and mount"),
]

EXT4 = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
BLOCK = VolumeCapability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    k = Kit(tmp_path)
    try:
        yield k
    finally:
        k.cleanup()


@pytest.fixture
def commands() -> Iterator[list[str]]:
    """Every command the runner starts during the test (it logs each one at DEBUG)."""
    logger = logging.getLogger("provisioner.mount.commands")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    started: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("running "):
                started.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        yield started
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _refuse_stage(
    kit: Kit, volume_id: str, device: str, match: str, commands: list[str], block: bool = True
) -> None:
    """Stage (and, with ``block``, block publish) refuse ``device``; nothing is written or made."""
    staging = kit.path(f"staging-{volume_id}")
    before = file_hash(device)
    with pytest.raises(FailedPrecondition, match=match):
        kit.core.stage(volume_id, staging, EXT4, {"devicePath": device}, {})
    if block:
        with pytest.raises(FailedPrecondition, match=match):
            kit.core.publish(
                volume_id, staging, kit.path(f"block-{volume_id}"), BLOCK, False, {"devicePath": device}, {}
            )
    assert file_hash(device) == before, f"{device} was written to"
    assert not [c for c in commands if "mkfs" in c], commands
    assert not os.path.lexists(staging) and not os.path.lexists(kit.path(f"block-{volume_id}"))


# -- devices ---------------------------------------------------------------------------------------


def test_a_loop_device_whose_file_is_not_named_after_the_volume(kit: Kit, commands: list[str]) -> None:
    device = kit.decoy(kit.loops / "decoy.img")
    _refuse_stage(kit, new_volume_id(), device, "loop device backed by", commands)


def test_a_loop_device_named_after_the_volume_outside_the_embedded_folder(
    kit: Kit, commands: list[str]
) -> None:
    volume_id = new_volume_id()
    device = kit.decoy(kit.root / "elsewhere" / volume_id)
    _refuse_stage(kit, volume_id, device, "loop device backed by", commands)


def test_another_volumes_device(kit: Kit, commands: list[str]) -> None:
    _, other_device = kit.volume()
    _refuse_stage(kit, new_volume_id(), other_device, "loop device backed by", commands)


def test_a_device_mounted_elsewhere(kit: Kit, commands: list[str]) -> None:
    volume_id, device = kit.volume()
    run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", device], 60)
    uuid_before = run(["blkid", "-p", "-s", "UUID", "-o", "value", device], 30).stdout
    Path(kit.path("elsewhere")).mkdir()
    run(["mount", device, kit.path("elsewhere")], 30)
    commands.clear()
    with pytest.raises(FailedPrecondition, match=r"is mounted at .*elsewhere"):
        kit.core.stage(volume_id, kit.path("staging"), EXT4, {"devicePath": device}, {})
    with pytest.raises(FailedPrecondition, match="is mounted at"):
        kit.core.publish(
            volume_id, kit.path("s"), kit.path("block"), BLOCK, False, {"devicePath": device}, {}
        )
    assert not [c for c in commands if "mkfs" in c or c.startswith("running mount")], commands
    assert run(["blkid", "-p", "-s", "UUID", "-o", "value", device], 30).stdout == uuid_before


def test_a_partitioned_device(kit: Kit, commands: list[str]) -> None:
    # A real DOS partition table (written by hand: no sfdisk here) on the volume's own file, on a
    # loop device with partition scanning (losetup -P): the device is provably the volume, but
    # partitioned. Where the kernel exposes the partition (loopNp1), the sysfs check refuses it;
    # kernels built without DOS partition support (this CI's) show none, and blkid's partition-table
    # signature refuses it. The sysfs partitions/holders check itself is also proven on a fake
    # /sys in test_devices.py.
    volume_id = new_volume_id()
    device = kit.decoy(kit.loops / volume_id, partitions=True)
    scanned = Path(f"/sys/block/{Path(device).name}/{Path(device).name}p1").exists()
    if scanned:
        _refuse_stage(kit, volume_id, device, "has partitions", commands)
    else:
        # What a block volume holds is the user's business: only the format is refused.
        _refuse_stage(kit, volume_id, device, "partition-table:dos", commands, block=False)


def test_a_blank_looking_device_with_data(kit: Kit, commands: list[str]) -> None:
    volume_id = new_volume_id()
    device = kit.decoy(kit.loops / volume_id, data=os.urandom(4096))
    assert run(["blkid", "-p", device], 30, ok_codes=(0, 2)).returncode == 2  # blkid sees nothing
    staging = kit.path("staging")
    before = file_hash(device)
    with pytest.raises(FailedPrecondition, match="first MiB is not zeros"):
        kit.core.stage(volume_id, staging, EXT4, {"devicePath": device}, {})
    assert file_hash(device) == before and not [c for c in commands if "mkfs" in c]


def test_a_format_marker_of_an_earlier_attachment_formats_nothing(kit: Kit, commands: list[str]) -> None:
    """mkfs was cut short here, the volume was detached, used elsewhere (data without a signature) and
    attached again: the kernel gives the disk a new sequence number, so the marker is not believed."""
    volume_id, device = kit.volume()
    earlier = kit.resolver.resolve(volume_id, {"devicePath": device}).appearance
    kit.backer.detach(volume_id)
    with open(kit.backer.path(volume_id), "r+b") as f:
        f.seek(512 * 1024)
        f.write(os.urandom(4096))  # what another node wrote meanwhile
    device = kit.backer.back(volume_id, 64 * MIB)
    now = kit.resolver.resolve(volume_id, {"devicePath": device}).appearance
    assert earlier and now and earlier != now
    kit.state.begin_format(FormatMarker(volume_id, device, "7:0", "loop file", "ext4", earlier))
    before = file_hash(device)
    with pytest.raises(FailedPrecondition, match="first MiB is not zeros"):
        kit.core.stage(volume_id, kit.path("staging"), EXT4, {"devicePath": device}, {})
    assert file_hash(device) == before and not [c for c in commands if "mkfs" in c]
    assert kit.state.format_started(volume_id) is None


def test_dev_zero(kit: Kit, commands: list[str]) -> None:
    volume_id = new_volume_id()
    with pytest.raises(FailedPrecondition, match="/dev/zero' is not a block device"):
        kit.core.stage(volume_id, kit.path("staging"), EXT4, {"devicePath": "/dev/zero"}, {})
    with pytest.raises(FailedPrecondition, match="not a block device"):
        kit.core.publish(
            volume_id, kit.path("s"), kit.path("block"), BLOCK, False, {"devicePath": "/dev/zero"}, {}
        )
    assert commands == [] and mounts_under(kit.root) == []


def test_a_root_disk_like_vda(kit: Kit, commands: list[str]) -> None:
    # A fake /dev and /sys shaped like this VM's root disk: virtio serial "overlay", a partition.
    tree = Tree(kit.root / "fake")
    vda = tree.disk("vda", virtio_serial="overlay", partitions=("vda1",))
    core = kit.make_core(tree.resolver)
    with pytest.raises(FailedPrecondition, match="serial 'overlay'"):
        core.stage(new_volume_id(), kit.path("staging"), EXT4, {"devicePath": vda}, {})
    assert commands == []


@pytest.mark.skipif(not Path("/sys/block/vda").exists(), reason="this machine has no /dev/vda")
def test_the_real_root_disk_is_refused_by_identity_alone() -> None:
    # Only the resolver (which reads sysfs and never opens the device) sees the real disk.
    with pytest.raises(FailedPrecondition):
        SysfsDeviceResolver(loop_dirs=()).resolve(new_volume_id(), {"devicePath": "/dev/vda"})


# -- paths -----------------------------------------------------------------------------------------


@pytest.fixture
def staged(kit: Kit) -> tuple[str, str, str]:
    """A real volume staged and published; the decoys sit next to it."""
    volume_id, device = kit.volume()
    staging, target = kit.path("staging"), kit.path("pod/mount")
    kit.core.stage(volume_id, staging, EXT4, {"devicePath": device}, {})
    kit.core.publish(volume_id, staging, target, EXT4, False, {}, {})
    return volume_id, staging, target


def _untouched(kit: Kit, calls: list[tuple[str, object]]) -> None:
    tree, mounts = snapshot(kit.root), mounts_under(kit.root)
    for name, call in calls:
        with pytest.raises((FailedPrecondition, NotFound)):
            call()  # type: ignore[operator]
        assert snapshot(kit.root) == tree, f"{name} changed the tree"
        assert mounts_under(kit.root) == mounts, f"{name} changed the mounts"


def test_a_foreign_tmpfs_is_never_unmounted_or_resized(kit: Kit, staged: tuple[str, str, str]) -> None:
    volume_id, _, _ = staged
    foreign = kit.tmpfs("foreign", {"keep.txt": "not the volume"})
    _untouched(
        kit,
        [
            ("unpublish", lambda: kit.core.unpublish(volume_id, foreign)),
            ("unstage", lambda: kit.core.unstage(volume_id, foreign)),
            ("stats", lambda: kit.core.get_volume_stats(volume_id, foreign)),
            ("expand", lambda: kit.core.expand(volume_id, foreign, EXT4)),
            ("publish", lambda: kit.core.publish(volume_id, foreign, kit.path("t2"), EXT4, False, {}, {})),
        ],
    )


def test_a_symlink_out_is_never_followed(kit: Kit, staged: tuple[str, str, str]) -> None:
    volume_id, staging, _ = staged
    outside = kit.tmpfs("outside", {"keep.txt": "outside"})
    (kit.root / "sandbox").mkdir()
    (kit.root / "sandbox" / "link").symlink_to(outside)
    (kit.root / "sandbox" / "linkdir").symlink_to(kit.root / "outside")
    link, through = str(kit.root / "sandbox" / "link"), str(kit.root / "sandbox" / "linkdir" / "new")
    _untouched(
        kit,
        [
            ("unpublish", lambda: kit.core.unpublish(volume_id, link)),
            ("unstage", lambda: kit.core.unstage(volume_id, link)),
            ("stats", lambda: kit.core.get_volume_stats(volume_id, link)),
            ("expand", lambda: kit.core.expand(volume_id, link, EXT4)),
            ("publish", lambda: kit.core.publish(volume_id, staging, link, EXT4, False, {}, {})),
            ("publish-through", lambda: kit.core.publish(volume_id, staging, through, EXT4, False, {}, {})),
            (
                "unpublish-through",
                lambda: kit.core.unpublish(volume_id, str(Path(through).parent / "keep.txt")),
            ),
        ],
    )


def test_a_regular_file_and_a_non_empty_directory_are_kept(kit: Kit, staged: tuple[str, str, str]) -> None:
    volume_id, staging, _ = staged
    Path(kit.path("file")).write_text("user data")
    Path(kit.path("full")).mkdir()
    Path(kit.path("full/keep.txt")).write_text("user data")
    tree, mounts = snapshot(kit.root), mounts_under(kit.root)
    for path in (kit.path("file"), kit.path("full")):
        kit.core.unpublish(volume_id, path)  # nothing of the volume there: OK, and nothing deleted
        kit.core.unstage(volume_id, path)
        with pytest.raises(FailedPrecondition):
            kit.core.publish(volume_id, staging, path, EXT4, False, {}, {})
        with pytest.raises(NotFound):
            kit.core.get_volume_stats(volume_id, path)
    assert snapshot(kit.root) == tree and mounts_under(kit.root) == mounts


def test_another_volumes_mount_is_not_this_volumes(kit: Kit, staged: tuple[str, str, str]) -> None:
    volume_id, staging, target = staged
    other = new_volume_id()
    _untouched(
        kit,
        [
            ("unpublish", lambda: kit.core.unpublish(other, target)),
            ("unstage", lambda: kit.core.unstage(other, staging)),
            ("stats", lambda: kit.core.get_volume_stats(other, target)),
            ("expand", lambda: kit.core.expand(other, target, EXT4)),
        ],
    )
    kit.core.unpublish(volume_id, target)
    kit.core.unstage(volume_id, staging)
    assert mounts_under(kit.root) == []


def test_stage_and_block_publish_never_follow_a_symlink(kit: Kit, commands: list[str]) -> None:
    # The volume's own blank device, but every path leads out through a symlink: stage must neither
    # format nor mount, and block publish must not bind, wherever the link points.
    volume_id, device = kit.volume()
    outside = kit.tmpfs("outside", {"keep.txt": "outside"})
    Path(outside, "empty").mkdir()
    Path(outside, "file").write_text("")
    (kit.root / "sandbox").mkdir()
    (kit.root / "sandbox" / "to-empty").symlink_to(Path(outside, "empty"))
    (kit.root / "sandbox" / "to-file").symlink_to(Path(outside, "file"))
    (kit.root / "sandbox" / "linkdir").symlink_to(outside)
    via = kit.root / "sandbox"
    ctx = {"devicePath": device}
    before = file_hash(device)
    commands.clear()
    _untouched(
        kit,
        [
            ("stage", lambda: kit.core.stage(volume_id, str(via / "to-empty"), EXT4, ctx, {})),
            ("stage-through", lambda: kit.core.stage(volume_id, str(via / "linkdir" / "new"), EXT4, ctx, {})),
            (
                "block-publish",
                lambda: kit.core.publish(
                    volume_id, kit.path("s"), str(via / "to-file"), BLOCK, False, ctx, {}
                ),
            ),
            (
                "block-publish-through",
                lambda: kit.core.publish(
                    volume_id, kit.path("s"), str(via / "linkdir" / "new"), BLOCK, False, ctx, {}
                ),
            ),
        ],
    )
    assert file_hash(device) == before, f"{device} was written to"
    assert not [c for c in commands if "mkfs" in c or c.startswith("running mount")], commands


def test_another_volumes_block_bind_is_not_this_volumes(kit: Kit) -> None:
    # Block access: the mount table names /dev's filesystem at the target, not the device; only the
    # bound node's device number tells the volumes apart before an unmount, a measure or a delete.
    volume_id, _ = kit.volume()
    other, other_device = kit.volume()
    target = kit.path("pod/block")
    kit.core.publish(other, kit.path("s"), target, BLOCK, False, {"devicePath": other_device}, {})
    _untouched(
        kit,
        [
            ("unpublish", lambda: kit.core.unpublish(volume_id, target)),
            ("stats", lambda: kit.core.get_volume_stats(volume_id, target)),
            ("expand", lambda: kit.core.expand(volume_id, target, BLOCK)),
        ],
    )
    kit.core.unpublish(other, target)
    assert mounts_under(kit.root) == []
