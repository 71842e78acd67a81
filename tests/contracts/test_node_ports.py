"""The node ports' contracts: the same scenarios over the fakes and the Linux adapters.

NodeCore's rule tests run against ``FakeMounter``/``FakeResolver``/``MemoryNodeState``; this suite is what
makes that trust earned. Each Mounter and DeviceResolver scenario runs over the fakes and over
:class:`~provisioner.mount.linux.LinuxMounter` and :class:`~provisioner.mount.devices.SysfsDeviceResolver`
on real loop devices, real mkfs and real mounts (root only; everything lives in the test's ``tmp_path``
and is torn down by :meth:`tests.node.loopkit.Kit.cleanup`, which touches nothing else on the machine).
The NodeState scenarios run over ``MemoryNodeState`` and ``FileNodeState``. Assertions are what the
port promises, nothing an implementation happens to do.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner import errors
from provisioner.mount.state import FileNodeState
from provisioner.node import MemoryNodeState
from provisioner.ports.node import (
    DeviceResolver,
    FormatMarker,
    FormatOptions,
    Mounter,
    NodeState,
    PathKind,
    PathRecord,
)
from tests.fakes.mounter import FakeMounter, FakeResolver
from tests.node.loopkit import Kit

MIB = 1024**2
ROOT_ONLY = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mkfs and mount"),
]


class Machine:
    """A Mounter and DeviceResolver with the means to set a scene: a folder, devices, files, links."""

    mounter: Mounter
    resolver: DeviceResolver

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def volume(self, size: int) -> tuple[str, str]:
        """A new blank device proven to be a new volume: (volume id, device path)."""
        raise NotImplementedError

    def grow(self, volume_id: str, size: int) -> None:
        raise NotImplementedError

    def directory(self, name: str) -> str:
        raise NotImplementedError

    def file(self, name: str, content: bytes) -> str:
        raise NotImplementedError

    def symlink(self, name: str, target: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Undo what the scene set up."""


class FakeMachine(Machine):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fake = FakeMounter()
        self.fake.add_dirs(self.root)
        self.mounter = self.fake
        self.resolver = FakeResolver(mounter=self.fake)

    def volume(self, size: int) -> tuple[str, str]:
        volume_id = f"vol-{uuid.uuid4().hex[:17]}"
        device = self.fake.add_device(f"/dev/fake{len(self.fake.devices)}", size)
        assert isinstance(self.resolver, FakeResolver)
        self.resolver.volumes[volume_id] = device.path
        return volume_id, device.path

    def grow(self, volume_id: str, size: int) -> None:
        assert isinstance(self.resolver, FakeResolver)
        self.fake.devices[self.resolver.volumes[volume_id]].size = size

    def directory(self, name: str) -> str:
        self.fake.add_dirs(self.path(name))
        return self.path(name)

    def file(self, name: str, content: bytes) -> str:
        self.fake.files[self.path(name)] = len(content)
        return self.path(name)

    def symlink(self, name: str, target: str) -> str:
        self.fake.symlinks.add(self.path(name))
        return self.path(name)


class LinuxMachine(Machine):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.kit = Kit(root)
        self.mounter = self.kit.mounter
        self.resolver = self.kit.resolver

    def volume(self, size: int) -> tuple[str, str]:
        return self.kit.volume(size)

    def grow(self, volume_id: str, size: int) -> None:
        self.kit.backer.resize(volume_id, size)

    def directory(self, name: str) -> str:
        os.makedirs(self.path(name), exist_ok=True)
        return self.path(name)

    def file(self, name: str, content: bytes) -> str:
        Path(self.path(name)).write_bytes(content)
        return self.path(name)

    def symlink(self, name: str, target: str) -> str:
        os.symlink(target, self.path(name))
        return self.path(name)

    def close(self) -> None:
        self.kit.cleanup()


@pytest.fixture(params=["fake", pytest.param("linux", marks=ROOT_ONLY)])
def machine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Machine]:
    m: Machine = FakeMachine(tmp_path) if request.param == "fake" else LinuxMachine(tmp_path)
    try:
        yield m
    finally:
        m.close()


# --- inspect and the tree -------------------------------------------------------------------------


def test_inspect_names_what_is_at_a_path_without_following_symlinks(machine: Machine) -> None:
    folder = machine.directory("dir")
    machine.file("dir/data", b"12345")
    machine.file("plain", b"abc")
    link = machine.symlink("link", folder)
    m = machine.mounter
    assert m.inspect(machine.path("nothing")).kind is PathKind.MISSING
    here = m.inspect(folder)
    assert (here.kind, here.entries, here.mounts) == (PathKind.DIRECTORY, 1, ())
    assert here.file_id
    plain = m.inspect(machine.path("plain"))
    assert (plain.kind, plain.entries) == (PathKind.FILE, 3)
    assert m.inspect(link).kind is PathKind.SYMLINK
    through = m.inspect(os.path.join(link, "data"))
    assert through.kind is PathKind.BLOCKED and link in through.blocker
    under_file = m.inspect(machine.path("plain/x"))
    assert under_file.kind is PathKind.BLOCKED and machine.path("plain") in under_file.blocker


def test_make_dirs_creates_the_missing_ones_outermost_first_and_never_through_a_symlink(
    machine: Machine,
) -> None:
    m = machine.mounter
    made = m.make_dirs(machine.path("a/b/c"))
    assert made == (machine.path("a"), machine.path("a/b"), machine.path("a/b/c"))
    assert m.make_dirs(machine.path("a/b/c")) == ()
    assert m.inspect(machine.path("a/b/c")).kind is PathKind.DIRECTORY
    link = machine.symlink("link", machine.path("a"))
    with pytest.raises(errors.FailedPrecondition):
        m.make_dirs(os.path.join(link, "d"))
    assert m.inspect(machine.path("a/d")).kind is PathKind.MISSING
    machine.file("f", b"")
    with pytest.raises(errors.FailedPrecondition):
        m.make_dirs(machine.path("f/g"))


def test_a_made_file_is_removed_only_by_its_id_and_only_while_empty(machine: Machine) -> None:
    m = machine.mounter
    target = machine.path("target")
    file_id = m.make_file(target)
    here = m.inspect(target)
    assert (here.kind, here.entries, here.file_id) == (PathKind.FILE, 0, file_id)
    with pytest.raises(errors.FailedPrecondition):
        m.make_file(target)  # something is there already
    with pytest.raises(errors.NotFound):
        m.make_file(machine.path("no-such-dir/target"))
    m.remove_file(target, "0:0")  # another file's id: left alone
    assert m.inspect(target).kind is PathKind.FILE
    m.remove_file(target, file_id)
    assert m.inspect(target).kind is PathKind.MISSING
    other = machine.file("other", b"data")
    m.remove_file(other, m.inspect(other).file_id)  # not empty: left alone
    assert m.inspect(other).kind is PathKind.FILE


def test_remove_dir_removes_an_empty_directory_only(machine: Machine) -> None:
    m = machine.mounter
    empty = machine.directory("empty")
    full = machine.directory("full")
    machine.file("full/x", b"x")
    m.remove_dir(empty)
    assert m.inspect(empty).kind is PathKind.MISSING
    m.remove_dir(empty)  # gone already: nothing to do
    with pytest.raises(errors.FailedPrecondition):
        m.remove_dir(full)
    assert m.inspect(full).kind is PathKind.DIRECTORY


# --- devices and filesystems ----------------------------------------------------------------------


def test_a_blank_device_reads_blank_until_formatted_and_is_not_formatted_twice(machine: Machine) -> None:
    m = machine.mounter
    _, device = machine.volume(320 * MIB)  # mkfs.xfs wants 300 MiB at least
    assert m.device_size(device) == 320 * MIB
    assert (m.probe(device), m.nonzero_region(device)) == ("", "")
    m.format(device, "ext4", FormatOptions())
    assert m.probe(device) == "ext4"
    assert m.nonzero_region(device) != ""
    with pytest.raises(errors.FailedPrecondition):  # without force, mkfs never overwrites a filesystem
        m.format(device, "xfs", FormatOptions())
    assert m.probe(device) == "ext4"
    m.format(device, "xfs", FormatOptions(), force=True)
    assert m.probe(device) == "xfs"
    with pytest.raises(errors.FailedPrecondition):
        m.format(device, "ext4", FormatOptions())
    assert m.probe(device) == "xfs"


def test_device_size_of_what_is_not_a_device_is_not_found(machine: Machine) -> None:
    with pytest.raises(errors.NotFound):
        machine.mounter.device_size(machine.path("no-device"))


def test_an_ext4_filesystem_is_measured_and_grown_offline_to_its_device(machine: Machine) -> None:
    m = machine.mounter
    volume_id, device = machine.volume(64 * MIB)
    m.format(device, "ext4", FormatOptions())
    before = m.filesystem_size(device, "", "ext4")
    assert 60 * MIB <= before <= 64 * MIB
    machine.grow(volume_id, 96 * MIB)
    assert m.device_size(device) == 96 * MIB
    assert m.filesystem_size(device, "", "ext4") == before
    m.resize_fs(device, "", "ext4")
    assert m.filesystem_size(device, "", "ext4") > 92 * MIB


def test_xfs_is_neither_measured_nor_grown_unmounted(machine: Machine) -> None:
    m = machine.mounter
    _, device = machine.volume(320 * MIB)  # mkfs.xfs wants 300 MiB at least
    m.format(device, "xfs", FormatOptions())
    with pytest.raises(errors.InvalidArgument):
        m.filesystem_size(device, "", "xfs")
    with pytest.raises(errors.InvalidArgument):
        m.resize_fs(device, "", "xfs")


# --- mounts ---------------------------------------------------------------------------------------


def test_mount_bind_and_unmount(machine: Machine) -> None:
    m = machine.mounter
    volume_id, device = machine.volume(64 * MIB)
    number = machine.resolver.resolve(volume_id, {}).major_minor
    m.format(device, "ext4", FormatOptions())
    staging = machine.directory("staging")
    target = machine.directory("target")
    m.mount(device, staging, "ext4", ("noatime",))
    top = m.inspect(staging).top
    assert top is not None and (top.fs_type, top.major_minor, top.read_only) == ("ext4", number, False)
    assert any(x.target == staging and x.major_minor == number for x in m.mounts())
    stats = m.fs_stats(staging)
    assert 0 < stats.used_bytes < stats.total_bytes <= 64 * MIB and stats.total_inodes > 0
    m.bind_mount(staging, target, True, ())
    bound = m.inspect(target).top
    assert bound is not None and (bound.major_minor, bound.read_only) == (number, True)
    m.unmount(target)
    assert m.inspect(target).mounts == ()
    with pytest.raises(errors.FailedPrecondition):  # nothing is mounted there any more
        m.unmount(target)
    m.unmount(staging)
    assert m.inspect(staging).mounts == ()


def test_a_device_bound_onto_a_file_reads_as_that_device(machine: Machine) -> None:
    m = machine.mounter
    volume_id, device = machine.volume(16 * MIB)
    number = machine.resolver.resolve(volume_id, {}).major_minor
    target = machine.path("block-target")
    m.make_file(target)
    m.bind_mount(device, target, False, ())
    here = m.inspect(target)
    assert (here.kind, here.rdev) == (PathKind.BLOCK_DEVICE, number)
    assert m.device_size(target) == 16 * MIB
    m.unmount(target)
    assert m.inspect(target).kind is PathKind.FILE


def test_a_missing_mount_point_is_not_found_and_the_wrong_filesystem_fails(machine: Machine) -> None:
    m = machine.mounter
    _, device = machine.volume(64 * MIB)
    m.format(device, "ext4", FormatOptions())
    with pytest.raises(errors.NotFound):
        m.mount(device, machine.path("missing"), "ext4", ())
    staging = machine.directory("staging")
    with pytest.raises(errors.FailedPrecondition):
        m.mount(device, staging, "xfs", ())
    assert m.inspect(staging).mounts == ()


def test_fs_stats_of_a_missing_path_is_not_found(machine: Machine) -> None:
    with pytest.raises(errors.NotFound):
        machine.mounter.fs_stats(machine.path("missing"))


# --- the device resolver --------------------------------------------------------------------------


def test_the_resolver_proves_the_volumes_own_device_and_no_other(machine: Machine) -> None:
    volume_id, device = machine.volume(16 * MIB)
    other_id, other = machine.volume(16 * MIB)
    found = machine.resolver.resolve(volume_id, {})
    assert found.path == device and found.size == 16 * MIB and found.proof
    here = machine.mounter.inspect(device)
    assert (here.kind, here.rdev) == (PathKind.BLOCK_DEVICE, found.major_minor)
    # The publish context's devicePath is a hint, never proof: another volume's device is not taken.
    hinted = machine.resolver.resolve(volume_id, {"devicePath": other})
    assert hinted.path == device
    assert machine.resolver.resolve(other_id, {}).path == other
    with pytest.raises(errors.NotFound):
        machine.resolver.resolve(f"vol-{uuid.uuid4().hex[:17]}", {})


# --- the node state -------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "file"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> NodeState:
    return MemoryNodeState() if request.param == "memory" else FileNodeState(str(tmp_path / "state"))


RECORD = PathRecord(
    volume_id="vol-0123456789abcdef0",
    path="/var/lib/kubelet/plugins/x/globalmount",
    kind="staging",
    major_minor="259:3",
    device="/dev/nvme1n1",
    created_dirs=("/var/lib/kubelet/plugins/x", "/var/lib/kubelet/plugins/x/globalmount"),
)
MARKER = FormatMarker("vol-0123456789abcdef0", "/dev/nvme1n1", "259:3", "serial", "ext4")


def test_path_records_are_remembered_replaced_and_forgotten(state: NodeState) -> None:
    assert state.recall(RECORD.path) is None
    state.remember(RECORD)
    assert state.recall(RECORD.path) == RECORD
    moved = PathRecord(RECORD.volume_id, RECORD.path, "staging", "259:7", "/dev/nvme2n1")
    state.remember(moved)
    assert state.recall(RECORD.path) == moved
    state.forget(RECORD.path)
    assert state.recall(RECORD.path) is None
    state.forget(RECORD.path)  # forgetting twice is fine


def test_format_markers_begin_and_end(state: NodeState) -> None:
    assert state.format_started(MARKER.volume_id) is None
    state.begin_format(MARKER)
    assert state.format_started(MARKER.volume_id) == MARKER
    assert state.format_started("vol-00000000000000000") is None
    state.end_format(MARKER.volume_id)
    assert state.format_started(MARKER.volume_id) is None
    state.end_format(MARKER.volume_id)
