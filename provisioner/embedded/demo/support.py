"""Pieces of ``zonal demo`` that are not the story itself: the recording CSI client, mount and
and folder helpers. Kept apart so story.py reads as the story."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provisioner.cli import CliError
from provisioner.csi.client import GrpcCsiClient
from provisioner.mount.linux import LinuxMounter
from provisioner.ports.kube import CreatedVolume, CreateVolumeRequest


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
def demo_folder(path: str) -> Iterator[Path]:
    if path:
        p = Path(path).resolve()
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CliError(f"--dir {path}: {e.strerror}") from e
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="zonal-demo-") as tmp:
        yield Path(tmp)
