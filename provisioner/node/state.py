"""The node state kept in memory: for embedded use and tests, where nothing must outlive the process.

A real node keeps its state on disk (:class:`provisioner.mount.state.FileNodeState`, ``--state-dir``)
so that records and format markers survive a restart; this one forgets them on exit.
"""

from __future__ import annotations

import threading

from provisioner.ports.node import FormatMarker, PathRecord


class MemoryNodeState:
    """Implements :class:`provisioner.ports.node.NodeState` in dictionaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, PathRecord] = {}
        self.markers: dict[str, FormatMarker] = {}

    def remember(self, record: PathRecord) -> None:
        with self._lock:
            self.records[record.path] = record

    def recall(self, path: str) -> PathRecord | None:
        with self._lock:
            return self.records.get(path)

    def forget(self, path: str) -> None:
        with self._lock:
            self.records.pop(path, None)

    def begin_format(self, marker: FormatMarker) -> None:
        with self._lock:
            self.markers[marker.volume_id] = marker

    def format_started(self, volume_id: str) -> FormatMarker | None:
        with self._lock:
            return self.markers.get(volume_id)

    def end_format(self, volume_id: str) -> None:
        with self._lock:
            self.markers.pop(volume_id, None)
