"""The CSI Node service's core: rules over the node ports, no I/O of its own.

:mod:`.core` (:class:`NodeCore`: stage, publish, their inverses, stats, expand), :mod:`.custody`
(proof that a path holds this volume and a device is free; taking back what zonal created),
:mod:`.inputs` (what a client may send, checked before anything runs), :mod:`.model` (settings,
answers) and :mod:`.state` (the node state kept in memory, for embedded use and
tests).
"""

from provisioner.node.core import NodeCore
from provisioner.node.inputs import format_options
from provisioner.node.model import (
    DEFAULT_METADATA_SOURCES,
    KNOWN_METADATA_SOURCES,
    NodeConfig,
    NodeInfo,
    VolumeStats,
)
from provisioner.node.state import MemoryNodeState

__all__ = [
    "DEFAULT_METADATA_SOURCES",
    "KNOWN_METADATA_SOURCES",
    "MemoryNodeState",
    "NodeConfig",
    "NodeCore",
    "NodeInfo",
    "VolumeStats",
    "format_options",
]
