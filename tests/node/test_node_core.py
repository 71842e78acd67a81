"""NodeCore's rules against the stateful FakeMounter: idempotency, bad input, the in-flight guard."""

from __future__ import annotations

import pytest

from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationInProgress,
)
from provisioner.model import EBS_ZONE_KEY, GIB, ZONE_KEY, AccessMode, AccessType, VolumeCapability
from provisioner.node import MemoryNodeState, NodeConfig, NodeCore, format_options
from provisioner.ports.csi import NodeCapability
from provisioner.ports.node import FormatOptions, MountInfo, NodeMetadata, PathKind
from tests.fakes.clock import FakeClock
from tests.fakes.mounter import FakeMounter, FakeResolver

VOL = "vol-0123456789abcdef0"
DEV = "/dev/nvme1n1"
STAGE = "/var/lib/kubelet/plugins/staging/vol1"
TARGET = "/var/lib/kubelet/pods/p1/volumes/vol1/mount"
MOUNT = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
BLOCK = VolumeCapability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)


class Env:
    def __init__(self, metadata: NodeMetadata | None = None, config: NodeConfig | None = None) -> None:
        self.mounter = FakeMounter()
        self.device = self.mounter.add_device(DEV, 10 * GIB, serial="vol0123456789abcdef0")
        self.mounter.add_dirs("/var/lib/kubelet/plugins/staging", "/var/lib/kubelet/pods/p1/volumes/vol1")
        self.resolver = FakeResolver({VOL: DEV}, self.mounter)
        self.state = MemoryNodeState()
        self.core = NodeCore(
            self.mounter,
            self.resolver,
            metadata or NodeMetadata(instance_id="i-0abc", zone="us-east-1a", instance_type="m5.large"),
            config or NodeConfig(),
            FakeClock(),
            state=self.state,
        )

    def top(self, path: str) -> MountInfo | None:
        return self.mounter.inspect(path).top

    def exists(self, path: str) -> bool:
        return self.mounter.inspect(path).kind is not PathKind.MISSING

    def stage(self, cap: VolumeCapability = MOUNT, volume_context: dict[str, str] | None = None) -> None:
        self.core.stage(VOL, STAGE, cap, {}, volume_context or {})

    def publish(self, cap: VolumeCapability = MOUNT, readonly: bool = False, target: str = TARGET) -> None:
        self.core.publish(VOL, STAGE, target, cap, readonly, {}, {})


@pytest.fixture
def env() -> Env:
    return Env()


# -- stage ---------------------------------------------------------------------------------------


def test_stage_formats_a_blank_device_and_mounts_it(env: Env) -> None:
    env.stage()
    assert env.mounter.calls == [("mkdir", STAGE), ("format", DEV, "ext4"), ("mount", DEV, STAGE, "ext4")]
    info = env.top(STAGE)
    assert info is not None and info.source == DEV


def test_stage_twice_is_a_no_op(env: Env) -> None:
    env.stage()
    calls = list(env.mounter.calls)
    env.stage()
    assert env.mounter.calls == calls


def test_stage_never_formats_a_device_that_holds_a_filesystem(env: Env) -> None:
    env.device.content, env.device.fs_size = "ext4", env.device.size
    env.stage()
    assert env.mounter.calls == [("mkdir", STAGE), ("mount", DEV, STAGE, "ext4")]


def test_stage_refuses_a_device_holding_another_filesystem(env: Env) -> None:
    env.device.content = "xfs"
    with pytest.raises(FailedPrecondition, match="refusing to reformat"):
        env.stage()
    env.device.content = "partition-table:gpt"
    with pytest.raises(FailedPrecondition, match="partition-table"):
        env.stage()
    assert not [c for c in env.mounter.calls if c[0] == "format"]


def test_stage_xfs_mounts_with_nouuid_and_flags(env: Env) -> None:
    cap = VolumeCapability(
        AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, fs_type="XFS", mount_flags=("noatime",)
    )
    env.stage(cap)
    assert env.mounter.calls[-1] == ("mount", DEV, STAGE, "xfs", "noatime", "nouuid")


def test_stage_grows_ext4_smaller_than_its_device_before_mounting(env: Env) -> None:
    env.device.content, env.device.fs_size = "ext4", 4 * GIB  # restored from a smaller snapshot
    env.stage()
    assert env.mounter.calls[1:] == [("resize", DEV, "", "ext4"), ("mount", DEV, STAGE, "ext4")]
    assert env.device.fs_size == env.device.size


def test_stage_grows_xfs_smaller_than_its_device_once_mounted(env: Env) -> None:
    env.device.content, env.device.fs_size = "xfs", 4 * GIB
    env.stage(VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, fs_type="xfs"))
    assert env.mounter.calls[1:] == [("mount", DEV, STAGE, "xfs", "nouuid"), ("resize", DEV, STAGE, "xfs")]
    assert env.device.fs_size == env.device.size


def test_stage_block_has_nothing_to_stage(env: Env) -> None:
    env.stage(BLOCK)
    assert env.mounter.calls == []


def test_stage_block_where_a_filesystem_is_staged_is_already_exists(env: Env) -> None:
    # CSI NodeStageVolume: "Volume published but is incompatible" → ALREADY_EXISTS, not a silent OK.
    env.stage()
    with pytest.raises(AlreadyExists, match="block"):
        env.stage(BLOCK)
    env.core.unstage(VOL, STAGE)
    env.stage(BLOCK)


def test_stage_with_another_volume_at_the_path_is_already_exists(env: Env) -> None:
    env.stage()
    env.mounter.add_device("/dev/nvme2n1", GIB, content="ext4")
    env.resolver.volumes["vol-0ther"] = "/dev/nvme2n1"
    with pytest.raises(AlreadyExists):
        env.core.stage("vol-0ther", STAGE, MOUNT, {}, {})
    with pytest.raises(AlreadyExists, match="as xfs"):
        env.core.stage(
            VOL, STAGE, VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "xfs"), {}, {}
        )


def test_stage_unknown_volume_is_not_found(env: Env) -> None:
    with pytest.raises(NotFound):
        env.core.stage("vol-missing", STAGE, MOUNT, {}, {})


def test_stage_passes_format_options_from_volume_context(env: Env) -> None:
    env.stage(volume_context={"blocksize": "4096", "inodesize": "512", "ext4bigalloc": "true"})
    assert env.device.format_options == FormatOptions(block_size=4096, inode_size=512, ext4_bigalloc=True)


@pytest.mark.parametrize(
    ("fs_type", "context"),
    [
        ("ext4", {"blocksize": "4k"}),
        ("ext4", {"blocksize": "²"}),
        ("ext4", {"blocksize": "3000"}),
        ("ext4", {"blocksize": "99999999999999999999"}),
        ("ext4", {"inodesize": "-1"}),
        ("xfs", {"bytesperinode": "16384"}),
        ("ext3", {"ext4bigalloc": "true"}),
        ("ext4", {"ext4clustersize": "16384"}),
        ("ext4", {"ext4bigalloc": "yes"}),
    ],
)
def test_bad_format_options_are_invalid(fs_type: str, context: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        format_options(fs_type, context)


# -- unstage -------------------------------------------------------------------------------------


def test_unstage_unmounts_and_removes_and_is_idempotent(env: Env) -> None:
    env.stage()
    env.core.unstage(VOL, STAGE)
    assert env.top(STAGE) is None and not env.exists(STAGE)
    env.core.unstage(VOL, STAGE)  # nothing there any more: still OK
    env.mounter.add_dirs(STAGE)
    env.core.unstage(VOL, STAGE)  # a directory with nothing mounted: OK, removed
    assert not env.exists(STAGE)
    assert env.state.records == {}


# -- publish -------------------------------------------------------------------------------------


def test_publish_binds_staging_to_target_and_repeats_ok(env: Env) -> None:
    env.stage()
    env.publish()
    info = env.top(TARGET)
    assert info is not None and not info.read_only and info.source == DEV
    calls = list(env.mounter.calls)
    env.publish()
    assert env.mounter.calls == calls


@pytest.mark.parametrize(
    ("cap", "readonly"),
    [(MOUNT, True), (VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_READER_ONLY), False)],
)
def test_publish_read_only(env: Env, cap: VolumeCapability, readonly: bool) -> None:
    env.stage()
    env.publish(cap, readonly=readonly)
    info = env.top(TARGET)
    assert info is not None and info.read_only


def test_incompatible_second_publish_is_already_exists(env: Env) -> None:
    env.stage()
    env.publish()
    with pytest.raises(AlreadyExists, match="read_only"):
        env.publish(readonly=True)
    env.mounter.add_device("/dev/nvme2n1", GIB, content="ext4")
    env.mounter.add_dirs("/stage2")
    env.mounter.mount("/dev/nvme2n1", "/stage2", "ext4", ())
    env.resolver.volumes["vol-0ther"] = "/dev/nvme2n1"
    with pytest.raises(AlreadyExists, match="another volume"):
        env.core.publish("vol-0ther", "/stage2", TARGET, MOUNT, False, {}, {})


def test_publish_unstaged_volume_is_failed_precondition(env: Env) -> None:
    with pytest.raises(FailedPrecondition, match="not staged"):
        env.publish()


def test_publish_block_binds_the_device_onto_a_file(env: Env) -> None:
    env.stage(BLOCK)
    env.publish(BLOCK)
    assert TARGET in env.mounter.files
    assert env.mounter.inspect(TARGET).rdev == env.device.number
    calls = list(env.mounter.calls)
    env.publish(BLOCK)
    assert env.mounter.calls == calls
    with pytest.raises(AlreadyExists):
        env.publish(BLOCK, readonly=True)


def test_unpublish_unmounts_removes_and_is_idempotent(env: Env) -> None:
    env.stage()
    env.publish()
    env.core.unpublish(VOL, TARGET)
    assert env.top(TARGET) is None and not env.exists(TARGET)
    assert env.top(STAGE) is not None  # staging untouched
    env.core.unpublish(VOL, TARGET)


def test_unpublish_block(env: Env) -> None:
    env.publish(BLOCK)
    env.core.unpublish(VOL, TARGET)
    assert not env.exists(TARGET) and env.top(TARGET) is None


# -- stats and expand ----------------------------------------------------------------------------


def test_stats_of_a_filesystem_has_bytes_and_inodes(env: Env) -> None:
    env.stage()
    env.publish()
    stats = env.core.get_volume_stats(VOL, TARGET)
    assert stats.total_bytes == 10 * GIB and stats.used_bytes == 4096 and stats.total_inodes == 1000


def test_stats_of_a_block_volume_has_its_size_only(env: Env) -> None:
    env.publish(BLOCK)
    stats = env.core.get_volume_stats(VOL, TARGET)
    assert stats.total_bytes == 10 * GIB and stats.total_inodes is None


def test_stats_of_an_unknown_path_is_not_found(env: Env) -> None:
    with pytest.raises(NotFound):
        env.core.get_volume_stats(VOL, "/nowhere")


def test_expand_grows_the_filesystem_to_the_device(env: Env) -> None:
    env.stage()
    env.publish()
    env.device.size = 20 * GIB
    assert env.core.expand(VOL, TARGET, MOUNT) == 20 * GIB
    assert env.device.fs_size == 20 * GIB
    assert env.core.expand(VOL, TARGET, None) == 20 * GIB  # again: harmless


def test_expand_block_is_a_no_op(env: Env) -> None:
    env.publish(BLOCK)
    env.device.size = 20 * GIB
    calls = list(env.mounter.calls)
    assert env.core.expand(VOL, TARGET, BLOCK) == 20 * GIB
    assert env.mounter.calls == calls


def test_expand_unknown_path_is_not_found(env: Env) -> None:
    with pytest.raises(NotFound):
        env.core.expand(VOL, "/nowhere", MOUNT)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("volume_id", "staging", "cap"),
    [
        ("", STAGE, MOUNT),
        (VOL, "", MOUNT),
        (VOL, STAGE, None),
        (VOL, "relative/path", MOUNT),
        (VOL, "/var/lib/../../etc", MOUNT),
        (VOL, STAGE, VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, fs_type="ntfs")),
        (VOL, STAGE, VolumeCapability(AccessType.MOUNT, AccessMode.UNKNOWN)),
    ],
)
def test_stage_bad_input_is_invalid_argument(
    volume_id: str, staging: str, cap: VolumeCapability | None
) -> None:
    env = Env()
    with pytest.raises(InvalidArgument):
        env.core.stage(volume_id, staging, cap, {}, {})
    assert env.mounter.calls == []


def test_multi_node_mount_exceeds_capabilities() -> None:
    env = Env()
    cap = VolumeCapability(AccessType.MOUNT, AccessMode.MULTI_NODE_MULTI_WRITER)
    with pytest.raises(FailedPrecondition):
        env.stage(cap)
    env.stage(VolumeCapability(AccessType.BLOCK, AccessMode.MULTI_NODE_MULTI_WRITER))  # io2 multi-attach


@pytest.mark.parametrize(
    ("volume_id", "staging", "target"),
    [
        ("", STAGE, TARGET),
        (VOL, STAGE, ""),
        (VOL, STAGE, "x/y"),
        (VOL, STAGE, "/a/../b"),
        (VOL, STAGE, STAGE + "/"),
        (VOL, STAGE, STAGE + "/sub"),
        (VOL, TARGET + "/s", TARGET),
    ],
)
def test_publish_bad_input_is_invalid_argument(volume_id: str, staging: str, target: str) -> None:
    env = Env()
    with pytest.raises(InvalidArgument):
        env.core.publish(volume_id, staging, target, MOUNT, False, {}, {})
    assert env.mounter.calls == []


def test_publish_without_a_staging_path_is_failed_precondition() -> None:
    # CSI NodePublishVolume: "Staging target path not set" → FAILED_PRECONDITION.
    env = Env()
    with pytest.raises(FailedPrecondition, match="staging_target_path is not set"):
        env.core.publish(VOL, "", TARGET, MOUNT, False, {}, {})


@pytest.mark.parametrize(("volume_id", "path"), [("", TARGET), (VOL, ""), (VOL, "/x/../y"), (VOL, "/a\0b")])
def test_unpublish_unstage_stats_expand_bad_input(volume_id: str, path: str) -> None:
    env = Env()
    for call in (env.core.unpublish, env.core.unstage, env.core.get_volume_stats):
        with pytest.raises(InvalidArgument):
            call(volume_id, path)
    with pytest.raises(InvalidArgument):
        env.core.expand(volume_id, path, None)


def test_a_relative_path_is_invalid_for_unpublish_but_not_found_for_stats_and_expand() -> None:
    # CSI sanity: NodeGetVolumeStats/NodeExpandVolume with "some/path" → NOT_FOUND.
    env = Env()
    for call in (env.core.unpublish, env.core.unstage):
        with pytest.raises(InvalidArgument):
            call(VOL, "some/path")
    with pytest.raises(NotFound):
        env.core.get_volume_stats(VOL, "some/path")
    with pytest.raises(NotFound):
        env.core.expand(VOL, "some/path", None)


# -- in-flight guard -----------------------------------------------------------------------------


def test_a_concurrent_operation_on_the_same_volume_is_aborted(env: Env) -> None:
    seen: list[Exception] = []
    other = env.mounter.add_device("/dev/nvme2n1", GIB)
    env.resolver.volumes["vol-0ther"] = other.path

    def during_format() -> None:
        env.mounter.on_format = None
        for call in (
            lambda: env.core.stage(VOL, "/elsewhere", MOUNT, {}, {}),
            lambda: env.core.unstage(VOL, STAGE),
            lambda: env.core.publish(VOL, STAGE, TARGET, MOUNT, False, {}, {}),
            lambda: env.core.unpublish(VOL, TARGET),
            lambda: env.core.expand(VOL, STAGE, None),
        ):
            with pytest.raises(OperationInProgress) as e:
                call()
            seen.append(e.value)
        env.core.stage("vol-0ther", "/stage-other", MOUNT, {}, {})  # other volumes are not blocked

    env.mounter.on_format = during_format
    env.stage()
    assert len(seen) == 5
    assert env.top("/stage-other") is not None
    env.core.unstage(VOL, STAGE)  # released after the first call finished


def test_the_guard_is_released_when_an_operation_fails(env: Env) -> None:
    env.device.content = "xfs"
    with pytest.raises(FailedPrecondition):
        env.stage()
    env.device.content = ""
    env.stage()


# -- info ----------------------------------------------------------------------------------------


def test_get_info_reports_instance_zone_keys_and_limit() -> None:
    env = Env(
        NodeMetadata(instance_id="i-0abc", zone="eu-west-1b", instance_type="m5.large", block_device_count=1)
    )
    info = env.core.get_info()
    assert info.node_id == "i-0abc"
    assert dict(info.segments) == {ZONE_KEY: "eu-west-1b", EBS_ZONE_KEY: "eu-west-1b"}
    assert info.max_volumes_per_node == 26  # 28 shared − 1 ENI − 1 root


def test_explicit_attach_limit_wins() -> None:
    env = Env(config=NodeConfig(volume_attach_limit=7))
    assert env.core.get_info().max_volumes_per_node == 7


def test_capabilities() -> None:
    assert set(Env().core.capabilities()) == {
        NodeCapability.STAGE_UNSTAGE_VOLUME,
        NodeCapability.GET_VOLUME_STATS,
        NodeCapability.EXPAND_VOLUME,
    }


def test_node_config_rejects_unknown_sources_and_bad_limits() -> None:
    with pytest.raises(ValueError, match="unknown metadata source"):
        NodeConfig(metadata_sources=("imds", "gce"))
    with pytest.raises(ValueError, match="at least 1"):
        NodeConfig(volume_attach_limit=0)
