"""The in-memory cluster now lives in the package (``zonal demo`` uses it); tests keep their names."""

from provisioner.embedded.kube.memory import (
    ZONE,
    MemoryKube,
    claim,
    csinode,
    merge_patch,
    node,
    storage_class,
    three_zone_cluster,
)

FakeKube = MemoryKube

__all__ = [
    "ZONE",
    "FakeKube",
    "claim",
    "csinode",
    "merge_patch",
    "node",
    "storage_class",
    "three_zone_cluster",
]
