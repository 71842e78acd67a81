"""Which EC2 volumes and snapshots are this driver's: the tags it writes, the filter that lists them, and
the one check before DeleteVolume and DeleteSnapshot.

Over model values and the driver's settings only; it must not call the cloud.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.config import EBS_DRIVER_NAME, DriverConfig
from provisioner.errors import FailedPrecondition
from provisioner.model import TAG_CLUSTER_PREFIX, TAG_DRIVER, TAG_VOLUME_NAME, TAG_ZONAL_DRIVER, Volume

# Written on a clone: the volume it was copied from (a snapshot-then-restore clone's own SnapshotId
# names the intermediate snapshot, so idempotency compares this tag instead).
TAG_SOURCE_VOLUME = "zonal.dev/source-volume"


def ownership_tags(driver: DriverConfig) -> dict[str, str]:
    """Tags marking a volume as created by this driver (and cluster, when one is configured)."""
    tags = {TAG_ZONAL_DRIVER: driver.driver_name, TAG_DRIVER: "true"}
    if driver.cluster_id:
        tags[TAG_CLUSTER_PREFIX + driver.cluster_id] = "owned"
    return tags


def owner_filter(driver: DriverConfig) -> dict[str, str]:
    """The EC2 tag filter that selects at least every volume or snapshot this driver owns.

    Listings keep only what :func:`owns` accepts among them: as ``ebs.csi.aws.com`` the filter is
    aws-ebs-csi-driver's own tag, which zonal writes too, so it also selects objects of zonal instances
    running under other driver names."""
    tags = (
        {TAG_DRIVER: "true"}
        if driver.driver_name == EBS_DRIVER_NAME
        else {TAG_ZONAL_DRIVER: driver.driver_name}
    )
    if driver.cluster_id:
        tags[TAG_CLUSTER_PREFIX + driver.cluster_id] = "owned"
    return tags


def owns(tags: Mapping[str, str], driver: DriverConfig, name_tag: str) -> bool:
    """Whether the volume or snapshot carrying ``tags`` was made by this driver (and cluster).

    Made by zonal: ``zonal.dev/driver`` names this driver. Taking over from aws-ebs-csi-driver (zonal
    runs as ``ebs.csi.aws.com``): also what that driver makes, its name tag (``CSIVolumeName`` or
    ``CSIVolumeSnapshotName``) with ``ebs.csi.aws.com/cluster=true`` and no ``zonal.dev/driver`` (a
    zonal object of another driver name stays that driver's). With a cluster id, both drivers also
    write ``kubernetes.io/cluster/<id>=owned``, which must match."""
    if driver.cluster_id and tags.get(TAG_CLUSTER_PREFIX + driver.cluster_id) != "owned":
        return False
    made_by = tags.get(TAG_ZONAL_DRIVER)
    if made_by is not None:
        return made_by == driver.driver_name
    return (
        driver.driver_name == EBS_DRIVER_NAME and tags.get(TAG_DRIVER) == "true" and bool(tags.get(name_tag))
    )


def why_not_owned(tags: Mapping[str, str], driver: DriverConfig, name_tag: str) -> str:
    """What the tags say instead, for the refusal message (the operator decides what to do)."""
    cluster_tag = TAG_CLUSTER_PREFIX + driver.cluster_id
    if driver.cluster_id and tags.get(cluster_tag) != "owned":
        return f"it is not tagged {cluster_tag}=owned"
    made_by = tags.get(TAG_ZONAL_DRIVER)
    if made_by is not None:
        return f"its {TAG_ZONAL_DRIVER} tag names {made_by}"
    if tags.get(TAG_DRIVER) == "true" and tags.get(name_tag):
        return f"it carries aws-ebs-csi-driver's tags (zonal owns those only as {EBS_DRIVER_NAME})"
    return "it carries no ownership tag (made outside Kubernetes or by another tool)"


def is_owned(volume: Volume, driver: DriverConfig) -> bool:
    return owns(volume.tags, driver, TAG_VOLUME_NAME)


def check_deletable(
    what: str, tags: Mapping[str, str], name_tag: str, driver: DriverConfig, allow_foreign: bool
) -> None:
    """Before deleting a volume or snapshot (``what`` names it): FAILED_PRECONDITION, saying what its
    tags say instead, unless this driver made it (:func:`owns`) or foreign deletes are allowed
    (``--allow-foreign-volume-delete``)."""
    if allow_foreign or owns(tags, driver, name_tag):
        return
    raise FailedPrecondition(
        f"{what} was not created by {driver.driver_name}: {why_not_owned(tags, driver, name_tag)}; "
        "refusing to delete it (see --allow-foreign-volume-delete)"
    )


def volume_label(volume: Volume) -> str:
    name = volume.tags.get(TAG_VOLUME_NAME)
    return f"{volume.volume_id} ({name})" if name else volume.volume_id
