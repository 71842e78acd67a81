"""NodeCore's safety rules against the FakeMounter: what it refuses to format, mount, unmount or delete.

The real-kernel versions of these cases (loop devices, tmpfs, symlinks) are in test_decoys_root.py.
"""

from __future__ import annotations

import pytest

from provisioner.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from provisioner.model import GIB, AccessMode, AccessType, VolumeCapability
from provisioner.node import MemoryNodeState, NodeConfig, NodeCore
from provisioner.ports.node import FormatMarker, MountInfo, NodeMetadata, PathKind
from tests.fakes.clock import FakeClock
from tests.fakes.mounter import FakeMounter, FakeResolver

VOL = "vol-0123456789abcdef0"
OTHER = "vol-0fffffffffffffff0"
DEV = "/dev/nvme1n1"
ROOT = "/var/lib/kubelet"
STAGE = f"{ROOT}/plugins/staging/vol1"
TARGET = f"{ROOT}/pods/p1/volumes/vol1/mount"
MOUNT = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
BLOCK = VolumeCapability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)
TMPFS = MountInfo(TARGET, "tmpfs", "tmpfs", "0:77", "/", ("rw",))


class Env:
    def __init__(self) -> None:
        self.mounter = FakeMounter()
        self.device = self.mounter.add_device(DEV, 10 * GIB, serial="vol0123456789abcdef0")
        self.mounter.add_dirs(f"{ROOT}/plugins/staging", f"{ROOT}/pods/p1/volumes/vol1")
        self.resolver = FakeResolver({VOL: DEV}, self.mounter)
        self.state = MemoryNodeState()
        self.core = NodeCore(
            self.mounter,
            self.resolver,
            NodeMetadata(instance_id="i-0abc", zone="us-east-1a"),
            NodeConfig(),
            FakeClock(),
            state=self.state,
        )

    def stage(self, cap: VolumeCapability = MOUNT) -> None:
        self.core.stage(VOL, STAGE, cap, {}, {})

    def publish(self, cap: VolumeCapability = MOUNT) -> None:
        self.core.publish(VOL, STAGE, TARGET, cap, False, {}, {})

    def formats(self) -> list[tuple[str, ...]]:
        return [c for c in self.mounter.calls if c[0] == "format"]


@pytest.fixture
def env() -> Env:
    return Env()


# -- the device must be whole, unused and blank before mkfs ------------------------------------------


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda e: setattr(e.device, "partitions", (("nvme1n1p1", "259:9"),)), "has partitions nvme1n1p1"),
        (lambda e: setattr(e.device, "holders", ("dm-0",)), "held by dm-0"),
        (lambda e: e.mounter.swaps.add(e.device.number), "swap"),
        (
            lambda e: e.mounter.table.append(MountInfo("/mnt/x", DEV, "ext4", e.device.number)),
            "mounted at /mnt/x",
        ),
        (lambda e: setattr(e.device, "nonzero", "first MiB"), "first MiB is not zeros"),
        (lambda e: setattr(e.device, "content", "partition-table:gpt"), "holds partition-table:gpt"),
    ],
)
def test_stage_refuses_a_device_that_is_not_whole_unused_and_blank(
    env: Env, setup: object, message: str
) -> None:
    setup(env)  # type: ignore[operator]
    with pytest.raises(FailedPrecondition, match=message):
        env.stage()
    assert env.formats() == []
    assert env.mounter.inspect(STAGE).kind is PathKind.MISSING  # nothing created either


def test_block_publish_refuses_a_device_mounted_as_a_filesystem(env: Env) -> None:
    env.stage()
    with pytest.raises(FailedPrecondition, match="mounted at"):
        env.core.publish(VOL, STAGE, f"{ROOT}/pods/p1/dev", BLOCK, False, {}, {})


def test_block_publish_binds_a_proven_device_the_user_partitioned(env: Env) -> None:
    # A raw block volume partitioned by its user (a VM disk) is still published once proven; a
    # partition of it mounted on the host is not.
    env.device.partitions = (("nvme1n1p1", "259:9"),)
    target = f"{ROOT}/pods/p1/dev"
    env.core.publish(VOL, STAGE, target, BLOCK, False, {}, {})
    assert env.mounter.inspect(target).rdev == env.device.number
    env.core.unpublish(VOL, target)
    env.mounter.table.append(MountInfo("/mnt/p1", DEV + "p1", "ext4", "259:9"))
    with pytest.raises(FailedPrecondition, match="mounted at /mnt/p1"):
        env.core.publish(VOL, STAGE, target, BLOCK, False, {}, {})


def test_a_device_with_another_volumes_serial_is_refused(env: Env) -> None:
    env.resolver.volumes[OTHER] = DEV
    with pytest.raises(FailedPrecondition, match="serial"):
        env.core.stage(OTHER, STAGE, MOUNT, {}, {})
    assert env.formats() == []


# -- an unfinished format is redone only when zonal started it --------------------------------------


def test_a_format_cut_short_is_redone_on_retry(env: Env) -> None:
    def killed() -> None:
        env.mounter.on_format = None
        env.device.nonzero = "first MiB"  # mkfs wrote some blocks before it was killed
        raise FailedPrecondition("mkfs.ext4 did not finish within 5s; it was killed")

    env.mounter.on_format = killed
    with pytest.raises(FailedPrecondition, match="killed"):
        env.stage()
    assert env.state.format_started(VOL) is not None
    assert env.mounter.inspect(STAGE).kind is PathKind.MISSING  # the directory it made is gone again
    env.stage()  # the kubelet retries
    assert env.formats() == [("format", DEV, "ext4", "force")]
    assert env.state.format_started(VOL) is None
    assert env.mounter.inspect(STAGE).top is not None


def test_without_a_marker_leftover_data_is_never_formatted(env: Env) -> None:
    env.device.nonzero = "last MiB"
    with pytest.raises(FailedPrecondition, match="last MiB"):
        env.stage()
    env.state.begin_format(FormatMarker(VOL, DEV, env.device.number, "serial", "ext4"))
    env.device.content = "xfs"  # someone else made a filesystem since: not zonal's format
    with pytest.raises(FailedPrecondition, match="holds xfs"):
        env.stage()
    assert env.formats() == []


def test_a_marker_from_an_earlier_attachment_never_formats_again(env: Env) -> None:
    """mkfs was cut short on this node, the volume went to another node and got data, then came back
    (the disk has a new appearance): what it holds now is judged like any content, never formatted."""
    env.state.begin_format(FormatMarker(VOL, DEV, env.device.number, "serial", "ext4", "boot-1/1"))
    env.device.appearance = "boot-1/7"  # detached and attached again since
    env.device.content = "ext4"  # the filesystem the other node finished and filled
    env.stage()
    assert env.formats() == []
    assert env.state.format_started(VOL) is None  # the stale marker is dropped
    env.core.unstage(VOL, STAGE)

    env.state.begin_format(FormatMarker(VOL, DEV, env.device.number, "serial", "ext4", "boot-1/1"))
    env.device.content, env.device.nonzero = "", "first MiB"  # used raw elsewhere: no signature, data
    with pytest.raises(FailedPrecondition, match="first MiB"):
        env.stage()
    assert env.formats() == []


def test_a_marker_without_an_appearance_never_formats_again(env: Env) -> None:
    env.state.begin_format(FormatMarker(VOL, DEV, env.device.number, "serial", "ext4"))  # an old marker
    env.device.content, env.device.nonzero = "", "last MiB"
    with pytest.raises(FailedPrecondition, match="last MiB"):
        env.stage()
    assert env.formats() == []


def test_unstage_forgets_a_format_marker(env: Env) -> None:
    env.state.begin_format(FormatMarker(VOL, DEV, env.device.number, "serial", "ext4"))
    env.core.unstage(VOL, STAGE)
    assert env.state.format_started(VOL) is None


# -- paths: never through symlinks, never over content ----------------------------------------------


def test_stage_refuses_symlinked_file_and_non_empty_targets(env: Env) -> None:
    env.mounter.symlinks.add(f"{ROOT}/plugins/staging/vol1")
    with pytest.raises(FailedPrecondition, match="symlink"):
        env.stage()
    env.mounter.symlinks.clear()
    env.mounter.symlinks.add(f"{ROOT}/plugins")
    with pytest.raises(FailedPrecondition, match=f"{ROOT}/plugins' is a symlink"):
        env.stage()
    env.mounter.symlinks.clear()
    env.mounter.files[STAGE] = 10
    with pytest.raises(FailedPrecondition, match="regular file"):
        env.stage()
    del env.mounter.files[STAGE]
    env.mounter.add_dirs(STAGE + "/user-data")
    with pytest.raises(FailedPrecondition, match="not empty"):
        env.stage()
    assert env.formats() == []


def test_publish_refuses_a_symlink_a_file_and_a_non_empty_directory(env: Env) -> None:
    env.stage()
    env.mounter.symlinks.add(TARGET)
    with pytest.raises(FailedPrecondition, match="symlink"):
        env.publish()
    env.mounter.symlinks.clear()
    env.mounter.files[TARGET] = 0
    with pytest.raises(FailedPrecondition, match="regular file"):
        env.publish()
    del env.mounter.files[TARGET]
    env.mounter.add_dirs(TARGET + "/x")
    with pytest.raises(FailedPrecondition, match="not empty"):
        env.publish()
    assert not [c for c in env.mounter.calls if c[0] == "bind"]


def test_block_publish_refuses_a_directory_and_a_non_empty_file(env: Env) -> None:
    env.mounter.add_dirs(TARGET)
    with pytest.raises(FailedPrecondition, match="directory"):
        env.publish(BLOCK)
    env.mounter.dirs.discard(TARGET)
    env.mounter.files[TARGET] = 5
    with pytest.raises(FailedPrecondition, match="non-empty regular file"):
        env.publish(BLOCK)
    assert not [c for c in env.mounter.calls if c[0] == "bind"]


def test_publish_refuses_a_staging_path_holding_another_device(env: Env) -> None:
    other = env.mounter.add_device("/dev/nvme2n1", GIB, content="ext4")
    env.mounter.add_dirs(STAGE)
    env.mounter.mount(other.path, STAGE, "ext4", ())
    with pytest.raises(FailedPrecondition, match="not volume"):
        env.publish()


# -- unpublish / unstage: only this volume, never a user's file ------------------------------------


def test_unpublish_leaves_a_foreign_mount_alone(env: Env) -> None:
    env.mounter.add_dirs(TARGET)
    env.mounter.table.append(TMPFS)
    with pytest.raises(FailedPrecondition, match=r"tmpfs.*not provably volume"):
        env.core.unpublish(VOL, TARGET)
    assert env.mounter.inspect(TARGET).top == TMPFS
    assert not [c for c in env.mounter.calls if c[0] in ("unmount", "rmdir")]


def test_unpublish_refuses_our_mount_under_a_foreign_one(env: Env) -> None:
    env.stage()
    env.publish()
    env.mounter.table.append(TMPFS)
    with pytest.raises(FailedPrecondition, match="tmpfs"):
        env.core.unpublish(VOL, TARGET)
    assert len(env.mounter.inspect(TARGET).mounts) == 2


def test_unpublish_never_deletes_a_users_file_or_directory(env: Env) -> None:
    env.mounter.files[TARGET] = 0  # an empty file zonal did not create
    env.core.unpublish(VOL, TARGET)  # nothing of the volume is there: OK
    assert TARGET in env.mounter.files
    del env.mounter.files[TARGET]
    env.mounter.add_dirs(TARGET + "/kept")
    env.core.unpublish(VOL, TARGET)
    assert env.mounter.inspect(TARGET + "/kept").kind is PathKind.DIRECTORY


def test_unpublish_refuses_a_symlink(env: Env) -> None:
    env.mounter.symlinks.add(TARGET)
    with pytest.raises(FailedPrecondition, match="symlink"):
        env.core.unpublish(VOL, TARGET)
    assert TARGET in env.mounter.symlinks


def test_a_volume_whose_device_vanished_is_still_cleaned_up_by_its_record(env: Env) -> None:
    env.stage()
    env.publish()
    del env.resolver.volumes[VOL]  # detached under us: the resolver no longer finds it
    env.core.unpublish(VOL, TARGET)
    env.core.unstage(VOL, STAGE)
    assert env.mounter.table == [] and env.state.records == {}


def test_another_volumes_record_proves_nothing(env: Env) -> None:
    env.stage()
    del env.resolver.volumes[VOL]
    with pytest.raises(FailedPrecondition, match="not provably volume"):
        env.core.unstage(OTHER, STAGE)
    assert env.mounter.inspect(STAGE).top is not None


def test_the_block_target_file_zonal_made_is_removed_with_the_dirs_it_made(env: Env) -> None:
    target = f"{ROOT}/plugins/volumeDevices/publish/pv1/pod1"
    env.core.publish(VOL, STAGE, target, BLOCK, False, {}, {})
    record = env.state.recall(target)
    assert record is not None and record.created_file
    env.core.unpublish(VOL, target)
    assert env.mounter.inspect(target).kind is PathKind.MISSING
    assert env.mounter.inspect(f"{ROOT}/plugins/volumeDevices").kind is PathKind.MISSING


# -- stats and expand act only on this volume --------------------------------------------------------


def test_stats_and_expand_of_a_foreign_mount_are_not_found(env: Env) -> None:
    env.mounter.add_dirs(TARGET)
    env.mounter.table.append(TMPFS)
    with pytest.raises(NotFound, match="tmpfs"):
        env.core.get_volume_stats(VOL, TARGET)
    with pytest.raises(NotFound, match="tmpfs"):
        env.core.expand(VOL, TARGET, MOUNT)
    env.mounter.table.clear()
    with pytest.raises(NotFound, match="not mounted"):
        env.core.get_volume_stats(VOL, TARGET)
    assert not [c for c in env.mounter.calls if c[0] == "resize"]


def test_expand_grows_the_proven_device_not_what_the_mount_table_names(env: Env) -> None:
    env.stage()
    env.publish()
    env.mounter.table[-1] = MountInfo(TARGET, "/dev/sda1", "ext4", env.device.number)
    env.device.size = 20 * GIB
    assert env.core.expand(VOL, TARGET, None) == 20 * GIB
    assert ("resize", DEV, TARGET, "ext4") in env.mounter.calls


# -- bad input is refused before anything runs --------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ("bind",),
        ("remount",),
        ("loop",),
        ("offset=4096",),
        ("noatime,bind",),
        ("X-mount.mkdir",),
        ("x-systemd.automount",),
        ("journal_path=/dev/vda",),
        ("logdev=/dev/vda",),
        ("shared",),
        ("",),
        ("no atime",),
        ("a\0b",),
        ("x" * 300,),
        ("noatime",) * 65,
    ],
)
def test_bad_mount_flags_are_invalid_argument(env: Env, flags: tuple[str, ...]) -> None:
    cap = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, mount_flags=flags)
    with pytest.raises(InvalidArgument):
        env.core.stage(VOL, STAGE, cap, {}, {})
    assert env.mounter.calls == []


def test_selinux_context_flags_keep_their_quoted_commas(env: Env) -> None:
    flag = 'context="system_u:object_r:container_file_t:s0:c1,c2"'
    cap = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, mount_flags=(flag, "noatime"))
    env.core.stage(VOL, STAGE, cap, {}, {})
    assert env.mounter.calls[-1] == ("mount", DEV, STAGE, "ext4", flag, "noatime")


@pytest.mark.parametrize(
    "path",
    ["/a/" + "b" * 256, "/" + "a/" * 2100, "/a\nb", "/a\x7fb", "/", "//", "/a/./.."],
)
def test_bad_paths_are_invalid_argument(env: Env, path: str) -> None:
    for call in (
        lambda: env.core.stage(VOL, path, MOUNT, {}, {}),
        lambda: env.core.publish(VOL, STAGE, path, MOUNT, False, {}, {}),
        lambda: env.core.unstage(VOL, path),
        lambda: env.core.unpublish(VOL, path),
        lambda: env.core.get_volume_stats(VOL, path),
    ):
        with pytest.raises(InvalidArgument):
            call()
    assert env.mounter.calls == []


def test_paths_are_normalised(env: Env) -> None:
    env.core.stage(VOL, STAGE.replace("/", "//") + "/./", MOUNT, {}, {})
    assert env.mounter.inspect(STAGE).top is not None
    with pytest.raises(AlreadyExists):
        env.core.stage(
            VOL,
            STAGE + "/.",
            VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "xfs"),
            {},
            {},
        )


@pytest.mark.parametrize("volume_id", ["vol-\x00", "v" * 129, "vol-a\nb"])
def test_bad_volume_ids_are_invalid_argument(env: Env, volume_id: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        env.core.unpublish(volume_id, TARGET)
    assert len(str(e.value)) < 200


def test_messages_quote_at_most_about_100_characters_of_a_path(env: Env) -> None:
    long_path = "/" + "/".join(["d" * 200] * 19)  # 3,819 bytes: a valid path
    env.mounter.symlinks.add("/" + "d" * 200)
    for call in (
        lambda: env.core.get_volume_stats(VOL, long_path),
        lambda: env.core.unpublish(VOL, long_path),
        lambda: env.core.stage(VOL, long_path, MOUNT, {}, {}),
    ):
        with pytest.raises((NotFound, FailedPrecondition)) as e:
            call()
        assert len(str(e.value)) < 400, str(e.value)


def test_stage_refuses_a_device_bound_as_a_raw_block_volume(env: Env) -> None:
    # A raw block bind shows in the mount table as the device node's filesystem (devtmpfs), not as the
    # device: found by what the bound path is. Formatting it would write under the pod using it.
    target = f"{ROOT}/pods/p1/dev"
    env.stage(BLOCK)
    env.core.publish(VOL, STAGE, target, BLOCK, False, {}, {})
    with pytest.raises(FailedPrecondition, match=f"is bound as a raw block volume at {target}"):
        env.core.stage(VOL, f"{ROOT}/plugins/staging/other", MOUNT, {}, {})
    assert env.formats() == []
    second = f"{ROOT}/pods/p2/dev"
    env.core.publish(VOL, STAGE, second, BLOCK, False, {}, {})  # a second pod's raw bind is still fine
    assert env.mounter.inspect(second).rdev == env.device.number


def test_unstage_and_unpublish_leave_the_others_path_alone(env: Env) -> None:
    # NodeUnstage given the pod's target (or NodeUnpublish given the staging path) must not unmount it
    # under the running pod: zonal recorded which role it mounted each path for.
    env.stage()
    env.publish()
    with pytest.raises(FailedPrecondition, match="published there, not staged"):
        env.core.unstage(VOL, TARGET)
    with pytest.raises(FailedPrecondition, match="staged there, not published"):
        env.core.unpublish(VOL, STAGE)
    assert env.mounter.inspect(TARGET).top is not None and env.mounter.inspect(STAGE).top is not None
    env.core.unpublish(VOL, TARGET)
    env.core.unstage(VOL, STAGE)
    assert env.mounter.table == []
