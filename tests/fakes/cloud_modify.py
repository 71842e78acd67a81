"""The FakeCloud's volume modifications (a mixin): ModifyVolume and DescribeVolumesModifications.

A modification moves ``modifying`` → ``optimizing`` → ``completed`` after the fake's ``modify_polls``
reads each (``completed`` at once when it is 0); a volume refuses a new modification while one is
running (EC2's IncorrectModificationState) and, when :attr:`max_modifications` is set, after that many
(EC2's rate limit). Every accepted call is recorded in :attr:`modified`.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING

from provisioner import errors
from provisioner.ports.cloud import VolumeModification

if TYPE_CHECKING:
    from tests.fakes.cloud import FakeCloud


class FakeModifications:
    def __init__(self) -> None:
        # EC2's per-volume modification rate limit; None: unlimited.
        self.max_modifications: int | None = None
        self.modified: list[tuple[str, dict[str, object]]] = []  # (volume id, changes) per accepted call
        self.modifications: dict[str, VolumeModification] = {}
        self._mod_polls: dict[str, int] = {}
        self._mod_count: collections.Counter[str] = collections.Counter()

    def _fake(self) -> FakeCloud:
        return self  # type: ignore[return-value]

    def modify_volume(
        self,
        volume_id: str,
        size_gib: int | None = None,
        volume_type: str | None = None,
        iops: int | None = None,
        throughput: int | None = None,
    ) -> VolumeModification:
        fake = self._fake()
        fake._enter("modify_volume")
        with fake._lock:
            entry = fake._volume(volume_id)
            v = entry.volume
            latest = self.modifications.get(volume_id)
            if latest is not None and latest.state in ("modifying", "optimizing"):
                raise errors.ModificationRateLimited(
                    f"IncorrectModificationState: volume {volume_id} is being modified ({latest.state})"
                )
            if self.max_modifications is not None and self._mod_count[volume_id] >= self.max_modifications:
                raise errors.ModificationRateLimited(
                    f"VolumeModificationRateExceeded: volume {volume_id} reached the modification rate limit"
                )
            if size_gib is not None and size_gib < v.size_gib:
                raise errors.InvalidArgument("InvalidParameterValue: new size cannot be smaller")
            changes = {
                "size_gib": size_gib,
                "volume_type": volume_type,
                "iops": iops,
                "throughput": throughput,
            }
            self.modified.append((volume_id, {k: val for k, val in changes.items() if val is not None}))
            self._mod_count[volume_id] += 1
            self._mod_polls[volume_id] = 0
            entry.volume = dataclasses.replace(
                v,
                size_gib=size_gib if size_gib is not None else v.size_gib,
                volume_type=volume_type or v.volume_type,
                iops=iops if iops is not None else v.iops,
                throughput=throughput if throughput is not None else v.throughput,
            )
            mod = VolumeModification(
                volume_id,
                "modifying" if fake.modify_polls > 0 else "completed",
                entry.volume.size_gib,
                entry.volume.volume_type,
                entry.volume.iops,
                entry.volume.throughput,
                fake._now(),
            )
            self.modifications[volume_id] = mod
            return mod

    def get_volume_modification(self, volume_id: str) -> VolumeModification | None:
        fake = self._fake()
        fake._enter("get_volume_modification")
        with fake._lock:
            fake._volume(volume_id)
            mod = self.modifications.get(volume_id)
            if mod is None or mod.state not in ("modifying", "optimizing"):
                return mod
            n = self._mod_polls[volume_id] = self._mod_polls.get(volume_id, 0) + 1
            if n >= fake.modify_polls:
                self._mod_polls[volume_id] = 0
                nxt = "optimizing" if mod.state == "modifying" else "completed"
                mod = self.modifications[volume_id] = dataclasses.replace(mod, state=nxt)
            return mod

    def finish_modification(self, volume_id: str) -> None:
        """Move the volume's latest modification to ``completed`` (as time would)."""
        with self._fake()._lock:
            mod = self.modifications[volume_id]
            self.modifications[volume_id] = dataclasses.replace(mod, state="completed")
