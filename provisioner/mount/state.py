"""The node's state folder (``--state-dir``, default ``/var/lib/zonal/node``): small JSON records that
outlive a restart of the plugin.

Layout::

    <state-dir>/paths/<sha256 of the path>.json     one PathRecord: what zonal mounted at a path
    <state-dir>/formats/<volume id>.json             one FormatMarker: a mkfs zonal started

A path record is written *before* the mount it describes and removed once the path is clean, so a
volume whose device has vanished can still be unmounted, and only where zonal itself mounted it. A
format marker is written (and fsynced) after the device was proven blank and *before* mkfs starts,
and removed when mkfs succeeds or the volume is unstaged: a marker found later means "this volume held
nothing, zonal started a format and never saw it finish", the one case where an unfinished
filesystem may be made again. Files are written to a temporary name, fsynced and renamed, so a
reader sees a whole record or none. An unreadable record is logged and treated as absent.

This module stores what the core hands it; it decides nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from provisioner.errors import FailedPrecondition
from provisioner.ports.node import FormatMarker, PathRecord

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/zonal/node"
_VOLUME_FILE_RE = re.compile(r"^vol-[0-9a-zA-Z]{1,64}$")


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        # Nothing is mounted or formatted without its record: refuse rather than go on unrecorded.
        raise FailedPrecondition(f"cannot write node state file {path}: {e.strerror}") from e


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable node state file %s: %s", path, e)
        return None
    return data if isinstance(data, dict) else None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class FileNodeState:
    """Implements :class:`provisioner.ports.node.NodeState` in a folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path_file(self, path: str) -> Path:
        return self.root / "paths" / f"{hashlib.sha256(path.encode()).hexdigest()}.json"

    def _format_file(self, volume_id: str) -> Path:
        if not _VOLUME_FILE_RE.match(volume_id):
            raise ValueError(f"not a volume id: {volume_id!r}")
        return self.root / "formats" / f"{volume_id}.json"

    def remember(self, record: PathRecord) -> None:
        _write(self._path_file(record.path), dataclasses.asdict(record))

    def recall(self, path: str) -> PathRecord | None:
        data = _read(self._path_file(path))
        if data is None:
            return None
        try:
            record = PathRecord(
                volume_id=str(data["volume_id"]),
                path=str(data["path"]),
                kind=str(data["kind"]),
                major_minor=str(data["major_minor"]),
                device=str(data.get("device", "")),
                created_dirs=tuple(str(d) for d in data.get("created_dirs", ())),
                created_file=str(data.get("created_file", "")),
            )
        except (KeyError, TypeError) as e:
            log.warning("ignoring malformed node state record for %s: %s", path, e)
            return None
        return record if record.path == path else None

    def forget(self, path: str) -> None:
        _remove(self._path_file(path))

    def begin_format(self, marker: FormatMarker) -> None:
        _write(self._format_file(marker.volume_id), dataclasses.asdict(marker))

    def format_started(self, volume_id: str) -> FormatMarker | None:
        if not _VOLUME_FILE_RE.match(volume_id):
            return None
        data = _read(self._format_file(volume_id))
        if data is None:
            return None
        try:
            return FormatMarker(
                volume_id=str(data["volume_id"]),
                device=str(data["device"]),
                major_minor=str(data["major_minor"]),
                proof=str(data["proof"]),
                fs_type=str(data["fs_type"]),
                appearance=str(data.get("appearance", "")),
            )
        except (KeyError, TypeError) as e:
            log.warning("ignoring malformed format marker of %s: %s", volume_id, e)
            return None

    def end_format(self, volume_id: str) -> None:
        if _VOLUME_FILE_RE.match(volume_id):
            _remove(self._format_file(volume_id))
