"""Tags that come from the driver's flags rather than a class: ``--k8s-tag-cluster-id``,
``--extra-tags`` (templates, like ``tagSpecification_N``), and the per-volume memory of
``allowAutoIOPSIncreaseOnModify``, with the IOPS it asks for when a volume grows.

As aws-ebs-csi-driver: ``--k8s-tag-cluster-id=X`` writes ``kubernetes.io/cluster/X=owned``,
``Name=X-dynamic-<name>``, ``KubernetesCluster=X`` and ``ebs.csi.aws.com/cluster-name=X`` on volumes
and snapshots (the in-tree plugin's tags, so tools that select by them keep working). These are extra
tags only: which objects the driver owns is decided in :mod:`.ownership`, not here.
``allowAutoIOPSIncreaseOnModify=true`` is remembered on the volume as
``<driver>/AllowAutoIOPSIncreaseOnModify`` and ``<driver>/IOPSPerGb`` (aws-ebs-csi-driver's keys, so
volumes it created keep the behaviour); on expansion the IOPS follow ``iopsPerGB × new size`` up to
the type's limits, never down.

Pure functions over config and model values: no cloud calls, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner import params as P
from provisioner import tagtemplate
from provisioner.config import DriverConfig
from provisioner.errors import InvalidArgument, shown
from provisioner.model import TAG_CLUSTER_PREFIX, Volume

TAG_NAME = "Name"
TAG_KUBERNETES_CLUSTER = "KubernetesCluster"
TAG_CLUSTER_NAME = "ebs.csi.aws.com/cluster-name"
ALLOW_AUTO_IOPS_SUFFIX = "/AllowAutoIOPSIncreaseOnModify"
IOPS_PER_GB_SUFFIX = "/IOPSPerGb"

# Every field a template in --extra-tags may name (each object fills in its own kind's).
EXTRA_TAG_FIELDS = frozenset(P.VOLUME_FIELDS) | frozenset(P.SNAPSHOT_FIELDS)


def cluster_tags(driver: DriverConfig, name: str) -> dict[str, str]:
    """``--k8s-tag-cluster-id``'s tags for the volume or snapshot ``name``; none when it is unset."""
    cluster = driver.k8s_tag_cluster_id
    if not cluster:
        return {}
    return {
        TAG_CLUSTER_PREFIX + cluster: "owned",
        TAG_NAME: f"{cluster}-dynamic-{name}",
        TAG_KUBERNETES_CLUSTER: cluster,
        TAG_CLUSTER_NAME: cluster,
    }


def check_extra_tags(extra_tags: Mapping[str, str]) -> None:
    """At start-up: every ``--extra-tags`` value parses and names only known fields (ValueError)."""
    for key, value in extra_tags.items():
        try:
            unknown = tagtemplate.Template.parse(value).fields() - EXTRA_TAG_FIELDS
        except tagtemplate.TemplateError as e:
            raise ValueError(f"--extra-tags {key}: {e}") from None
        if unknown:
            raise ValueError(
                f"--extra-tags {key}: unknown field(s) {', '.join('.' + f for f in sorted(unknown))}; "
                f"known: {', '.join('.' + f for f in sorted(EXTRA_TAG_FIELDS))}"
            )


def extra_tags(driver: DriverConfig, fields: Mapping[str, str]) -> dict[str, str]:
    """``--extra-tags`` rendered for one object: ``fields`` are its kind's; the other kind's render
    empty. A value that fails to evaluate (``field`` past the end…) is InvalidArgument."""
    values = {f: "" for f in EXTRA_TAG_FIELDS} | dict(fields)
    out: dict[str, str] = {}
    for key, template in driver.extra_tags.items():
        try:
            out[key] = tagtemplate.render(template, values, max_output=256)
        except tagtemplate.TemplateError as e:
            raise InvalidArgument(f"--extra-tags {shown(key)}: {e}") from None
    return out


def volume_driver_tags(driver: DriverConfig, name: str, parameters: Mapping[str, str]) -> dict[str, str]:
    """Cluster tags then ``--extra-tags`` for a new volume (class tags are laid over these)."""
    fields = P.template_fields(parameters, P.VOLUME_FIELDS)
    return {**cluster_tags(driver, name), **extra_tags(driver, fields)}


def auto_iops_tags(driver: DriverConfig, parsed: P.CreateParameters) -> dict[str, str]:
    """The per-volume memory of ``allowAutoIOPSIncreaseOnModify`` (and the iopsPerGB it scales by)."""
    if not parsed.auto_iops_on_modify:
        return {}
    tags = {driver.driver_name + ALLOW_AUTO_IOPS_SUFFIX: "true"}
    if parsed.iops_per_gb is not None:
        tags[driver.driver_name + IOPS_PER_GB_SUFFIX] = str(parsed.iops_per_gb)
    return tags


def auto_iops(volume: Volume, driver_name: str, size_gib: int) -> int | None:
    """The IOPS a volume that remembers ``allowAutoIOPSIncreaseOnModify`` should have at ``size_gib``,
    when that is more than it has now; None otherwise (no memory, no ratio, or nothing to raise)."""
    if volume.tags.get(driver_name + ALLOW_AUTO_IOPS_SUFFIX, "").lower() != "true":
        return None
    ratio = volume.tags.get(driver_name + IOPS_PER_GB_SUFFIX, "")
    if not ratio.isdigit() or int(ratio) <= 0 or volume.volume_type not in P.VOLUME_TYPES:
        return None
    wanted = P.total_iops(
        P.CreateParameters(volume_type=volume.volume_type, iops_per_gb=int(ratio), allow_iops_increase=True),
        size_gib,
    )
    if wanted is None or (volume.iops is not None and wanted <= volume.iops):
        return None
    return wanted
