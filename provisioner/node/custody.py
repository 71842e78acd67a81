"""What of a volume is where: the proofs NodeCore asks before it mounts, unmounts, measures or deletes.

- :meth:`Custody.ownership`: the device numbers that are provably this volume's at a path — the
  resolver's proof now, or zonal's own record of what it mounted there (so a volume whose device has
  vanished can still be cleaned up, and only where zonal put it);
- :meth:`Custody.check_free`: a device is whole and unused (no partitions, holders, mounts, swap);
- :meth:`Custody.clean`: NodeUnpublish/NodeUnstage — unmount only this volume's mounts, remove only
  an empty directory or the empty file zonal itself created, never follow a symlink;
- :meth:`Custody.undo`: after a failed stage/publish, take back the directories it created.

Like the core, it reaches the machine only through the ports; it raises domain errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.errors import FailedPrecondition, NotFound, ZonalError, shown
from provisioner.ports.node import (
    BlockDevice,
    DeviceResolver,
    Mounter,
    MountInfo,
    NodeState,
    PathKind,
    PathRecord,
    PathState,
)

UNREACHABLE = (PathKind.BLOCKED, PathKind.SYMLINK)


@dataclass(frozen=True)
class Ownership:
    """The device numbers that are provably a volume's at one path, and how that was shown."""

    numbers: frozenset[str]
    device: BlockDevice | None  # proven now (None when the resolver could not)
    record: PathRecord | None  # zonal's own record for the path, when it names this volume
    why_not: str  # the resolver's reason, for messages when nothing matches


def unreachable(what: str, here: PathState) -> FailedPrecondition:
    reason = here.blocker or f"{shown(here.path)} is a symlink"
    return FailedPrecondition(
        f"{what} {shown(here.path)} cannot be used: {reason}; zonal never follows symlinks in CSI paths"
    )


class Custody:
    """The checks and the clean-up shared by NodeCore's calls (see the module docstring)."""

    def __init__(
        self, mounter: Mounter, resolver: DeviceResolver, state: NodeState, log: logging.Logger
    ) -> None:
        self.mounter = mounter
        self.resolver = resolver
        self.state = state
        self.log = log

    def ownership(self, volume_id: str, path: str, publish_context: Mapping[str, str]) -> Ownership:
        numbers: set[str] = set()
        record = self.state.recall(path)
        if record is not None and record.volume_id != volume_id:
            record = None
        if record is not None:
            numbers.add(record.major_minor)
        device, why_not = None, ""
        try:
            device = self.resolver.resolve(volume_id, publish_context)
            numbers.add(device.major_minor)
        except (NotFound, FailedPrecondition) as e:
            why_not = f" ({e})"
        return Ownership(frozenset(numbers), device, record, why_not)

    def check_free(self, volume_id: str, device: BlockDevice, raw_block: bool = False) -> None:
        """Refuse a device that is partitioned, held, mounted anywhere or used as swap.

        ``raw_block``: the device is about to be bound as a raw block volume, where the partitions are
        the user's own layout inside the volume (a VM disk, say): they are allowed then, since the
        device is already proven to be the volume and nothing is written; a mounted partition, a holder
        or swap is still refused."""
        problems = []
        if device.partitions and not raw_block:
            problems.append(f"has partitions {', '.join(name for name, _ in device.partitions)}")
        if device.holders:
            problems.append(f"is held by {', '.join(device.holders)} (device mapper, RAID or LVM)")
        table = self.mounter.mounts()
        mounted = [m.target for m in table if m.major_minor in device.numbers]
        if mounted:
            more = f" and {len(mounted) - 3} more" if len(mounted) > 3 else ""
            problems.append(f"is mounted at {', '.join(mounted[:3])}{more}")
        # Binding it raw once more (a second pod's target) is fine; formatting or mounting it is not.
        bound = [] if raw_block else self._bound_raw(table, device)
        if bound:
            more = f" and {len(bound) - 3} more" if len(bound) > 3 else ""
            problems.append(f"is bound as a raw block volume at {', '.join(bound[:3])}{more}")
        if device.numbers & self.mounter.swap_devices():
            problems.append("is in use as swap")
        if problems:
            raise FailedPrecondition(
                f"device {device.path} of volume {shown(volume_id)} ({device.proof}) {'; '.join(problems)}: "
                "zonal formats, mounts and binds only a whole, unused device"
            )

    def _bound_raw(self, table: tuple[MountInfo, ...], device: BlockDevice) -> list[str]:
        """Paths where the device node itself is bound (a raw block volume): the mount table names
        the node's filesystem (devtmpfs) there, not the device, so each file bind is looked at (with
        the table already read: not once more per bind, a kubelet node has hundreds of them)."""
        bound = []
        for m in table:
            if m.root == "/":
                continue  # a whole filesystem, not a bound device node
            try:
                here = self.mounter.inspect(m.target, table)
            except ZonalError:
                continue  # unreadable: not provably this device
            if here.kind is PathKind.BLOCK_DEVICE and here.rdev in device.numbers:
                bound.append(m.target)
        return bound

    def empty_or_missing_dir(self, what: str, here: PathState) -> None:
        if here.kind in UNREACHABLE:
            raise unreachable(what, here)
        if here.kind not in (PathKind.MISSING, PathKind.DIRECTORY):
            raise FailedPrecondition(f"{what} {shown(here.path)} is a {here.kind.value}, not a directory")
        if here.kind is PathKind.DIRECTORY and here.entries:
            raise FailedPrecondition(
                f"{what} {shown(here.path)} is not empty and nothing is mounted there; zonal mounts only on "
                "an empty directory, so nothing in it is hidden"
            )

    def undo(self, path: str, created_dirs: tuple[str, ...], created_file: str = "") -> None:
        """After a failed stage/publish: remove what this call created, if still empty and unmounted."""
        try:
            here = self.mounter.inspect(path)
            if here.mounts:
                return  # the mount happened after all (e.g. killed mid-way): the record stays
            self.state.forget(path)
            if created_file:
                self.mounter.remove_file(path, created_file)
            for directory in reversed(created_dirs):
                there = self.mounter.inspect(directory)
                if there.kind is PathKind.DIRECTORY and not there.mounts and not there.entries:
                    self.mounter.remove_dir(directory)
        except ZonalError as e:
            self.log.warning("could not undo what a failed call created at %s: %s", path, e)

    def clean(self, volume_id: str, path: str, what: str) -> None:
        """Unmount what of ``volume_id`` is at ``path``, then remove what zonal created there.

        ``what`` is the role asked for ("staging_target_path" or "target_path"): a path zonal recorded
        mounting for the other role is refused, so NodeUnstage never unmounts a pod's target."""
        here = self.mounter.inspect(path)
        record = self.state.recall(path)
        staging = what == "staging_target_path"
        if record is not None and record.volume_id == volume_id and (record.kind == "staging") != staging:
            done, asked = ("published", "staged") if staging else ("staged", "published")
            raise FailedPrecondition(
                f"{what} {shown(path)} is where zonal {done} volume {shown(volume_id)}: {done} there, not "
                f"{asked}; it was left alone"
            )
        if here.kind is PathKind.MISSING:
            self.state.forget(path)
            return  # CSI: NodeUnstage/NodeUnpublish when nothing is there → OK.
        if here.kind in UNREACHABLE:
            raise unreachable(what, here)
        if here.mounts:
            ours = self.ownership(volume_id, path, {})
            while (top := here.top) is not None:
                held = here.rdev if here.kind is PathKind.BLOCK_DEVICE else top.major_minor
                if held not in ours.numbers:
                    raise FailedPrecondition(
                        f"{what} {shown(path)} has {top.describe()} mounted, which is not provably volume "
                        f"{shown(volume_id)}{ours.why_not}; it was left alone"
                    )
                self.log.info("unmounting %s (volume %s)", path, volume_id)
                self.mounter.unmount(path)
                here = self.mounter.inspect(path)
        self.remove_leftover(volume_id, here, record if record and record.volume_id == volume_id else None)
        self.state.forget(path)

    def remove_leftover(self, volume_id: str, here: PathState, record: PathRecord | None) -> None:
        path = here.path
        if here.kind is PathKind.DIRECTORY and not here.entries:
            # CSI NodeUnpublishVolume: the SP deletes the target path it published to.
            self.mounter.remove_dir(path)
        elif here.kind is PathKind.FILE and record is not None and record.created_file == here.file_id:
            self.mounter.remove_file(path, record.created_file)
        elif here.kind is not PathKind.MISSING:
            # Not this volume and not zonal's: nothing of the volume is here, so the call is done,
            # but a user's file or a non-empty directory is never deleted.
            self.log.warning(
                "%s (volume %s): left in place: a %s%s that zonal did not create",
                path,
                volume_id,
                "non-empty " if here.entries else "",
                here.kind.value,
            )
            return
        if record is not None:
            for directory in reversed(record.created_dirs):
                if directory == path:
                    continue
                there = self.mounter.inspect(directory)
                if there.kind is PathKind.DIRECTORY and not there.mounts and not there.entries:
                    self.mounter.remove_dir(directory)

    def mounted_here(self, volume_id: str, path: str) -> tuple[PathState, Ownership]:
        """What is at ``path`` when it is this volume's; NotFound otherwise (CSI: "Volume does not
        exist" at that path → NOT_FOUND)."""
        here = self.mounter.inspect(path)
        if here.kind is PathKind.MISSING:
            raise NotFound(f"volume path {shown(path)} does not exist")
        if here.kind in UNREACHABLE:
            raise NotFound(
                f"volume path {shown(path)} cannot be reached without following a symlink: {here.blocker}"
            )
        top = here.top
        if top is None:
            raise NotFound(f"volume {shown(volume_id)} is not mounted at {shown(path)}")
        ours = self.ownership(volume_id, path, {})
        held = here.rdev if here.kind is PathKind.BLOCK_DEVICE else top.major_minor
        if held not in ours.numbers:
            raise NotFound(
                f"volume path {shown(path)} holds {top.describe()}, "
                f"not volume {shown(volume_id)}{ours.why_not}"
            )
        return here, ours

    def device_path(self, volume_id: str, ours: Ownership, held: str) -> str:
        """The device node holding ``held`` (the device number mounted at the path) now: the one the
        resolver proved, or the recorded one if it still has that number (e.g. a Xen disk, found only
        through its attachment record)."""
        if ours.device is not None and ours.device.major_minor == held:
            return ours.device.path
        record = ours.record
        if record is not None and record.device and record.major_minor == held:
            there = self.mounter.inspect(record.device)
            if there.kind is PathKind.BLOCK_DEVICE and there.rdev == held:
                return record.device
        raise FailedPrecondition(
            f"cannot find the device of volume {shown(volume_id)} (device {held}){ours.why_not}"
        )
